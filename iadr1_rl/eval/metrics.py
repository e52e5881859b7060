"""Balanced accuracy per dataset, as the paper reports it.

normal accuracy = normals answered `no` / normals; anomaly accuracy = anomalies answered
`yes` / anomalies; balanced accuracy = their mean. Overkill = normals answered `yes` /
normals; miss = anomalies answered `no` / anomalies. An unparseable answer is wrong and
counted (`unparsed`). A dataset without normal (or anomalous) items has no balanced
accuracy: it is None, with a note, never a division by zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from rewards import SAME_CATEGORY_RULES


@dataclass(frozen=True)
class DatasetScore:
    balanced_accuracy: float | None
    normal_accuracy: float | None
    anomaly_accuracy: float | None
    overkill: float | None
    miss: float | None
    n: int
    n_normal: int
    n_anomalous: int
    unparsed: int
    note: str = ""


def _ratio(count: int, total: int) -> float | None:
    return count / total if total else None


def dataset_score(pairs: Iterable[tuple[str, str | None]]) -> DatasetScore:
    """Score (label answer, predicted answer or None) pairs of one dataset."""
    counts: dict[tuple[str, str | None], int] = defaultdict(int)
    for gold, predicted in pairs:
        counts[(gold, predicted)] += 1
    n_normal = sum(v for (g, _), v in counts.items() if g == "no")
    n_anomalous = sum(v for (g, _), v in counts.items() if g == "yes")
    normal_accuracy = _ratio(counts[("no", "no")], n_normal)
    anomaly_accuracy = _ratio(counts[("yes", "yes")], n_anomalous)
    notes = []
    if not n_normal:
        notes.append("no normal items")
    if not n_anomalous:
        notes.append("no anomalous items")
    balanced = None if notes else (normal_accuracy + anomaly_accuracy) / 2
    return DatasetScore(
        balanced_accuracy=balanced,
        normal_accuracy=normal_accuracy,
        anomaly_accuracy=anomaly_accuracy,
        overkill=_ratio(counts[("no", "yes")], n_normal),
        miss=_ratio(counts[("yes", "no")], n_anomalous),
        n=n_normal + n_anomalous,
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        unparsed=sum(v for (_, p), v in counts.items() if p is None),
        note="; ".join(notes) + ("; balanced accuracy undefined" if notes else ""),
    )


def score_predictions(rows: Iterable[tuple[str, str, str | None]]) -> dict:
    """`{"datasets": {name: {...}}, "average_balanced_accuracy"}` from (dataset, gold, predicted)."""
    by_dataset: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for dataset, gold, predicted in rows:
        if gold not in ("yes", "no"):
            raise ValueError(f"label answer must be 'yes' or 'no', got {gold!r} (dataset {dataset})")
        by_dataset[dataset].append((gold, predicted))
    datasets = {name: asdict(dataset_score(pairs)) for name, pairs in sorted(by_dataset.items())}
    defined = [d["balanced_accuracy"] for d in datasets.values() if d["balanced_accuracy"] is not None]
    return {
        "datasets": datasets,
        "average_balanced_accuracy": sum(defined) / len(defined) if defined else None,
    }


def item_metrics(output: str, label: dict, scorer) -> dict[str, float]:
    """The SC-GRPO reward's view of one prediction: answer accuracy, format validity and
    the total for every item; location and type only for anomalous ones whose label gives
    them (gated on a `yes` answer, as the reward is). A metric no item has is n/a, not 0.

    Beside the graded `type_score`, `type_category_accuracy` says whether the predicted type
    is the label's kind of defect at all (worded as the label, or as a synonym). The two
    separate "saw the right defect" from "named it in the label's words": a model can raise
    the type score by naming defects as the labels do while telling them apart no better.
    """
    return score_metrics(scorer.score(output, label), scorer.parse_label(label))


def score_metrics(score, parsed) -> dict[str, float]:
    """`item_metrics` of a score already computed, with its parsed label."""
    values = {"answer_accuracy": score.accuracy, "format_valid": score.consistency, "mean_reward": score.total}
    if parsed.anomalous and parsed.cells:  # a label without a location (no mask, as MMAD) measures nothing
        values["location_accuracy"] = score.location
    if parsed.anomalous and parsed.type:
        values.update(type_score=score.type, type_category_accuracy=float(score.type_rule in SAME_CATEGORY_RULES))
    return values


REWARD_SUMMARY = ("mean_reward", "format_valid", "location_accuracy", "type_score", "type_category_accuracy")


def reward_summary(rows: list[dict], scorer) -> dict[str, float | None]:
    """Each prediction row scored once by `scorer`: format validity and mean reward over
    all items; location accuracy, type score and type category accuracy over the
    anomalous ones whose label gives them (None without any)."""
    return summarise([item_metrics(row["output"], row["label"], scorer) for row in rows])


def summarise(items: list[dict[str, float]]) -> dict[str, float | None]:
    """The mean of each REWARD_SUMMARY metric over the items that have it (None: none has)."""
    summary: dict[str, float | None] = {}
    for metric in REWARD_SUMMARY:
        values = [item[metric] for item in items if metric in item]
        summary[metric] = sum(values) / len(values) if values else None
    return summary


def evaluation_report(predictions: str | Path, fmt: str = "tags", scorer=None) -> dict:
    """Balanced accuracy per dataset and, for IAD-R1 outputs (`tags`), the reward's view
    of them by `scorer` (default: the contract's), named by its preset and digest: what
    every evaluation writes. `predictions` is read once (it may be stdin)."""
    from rewards import Scorer

    from .answers import prediction_rows, read_predictions

    scorer = scorer or Scorer()
    rows = prediction_rows(predictions)
    report = score_predictions(read_predictions(rows, fmt, predictions))
    if fmt == "tags":
        report.update(reward_summary(rows, scorer))
    report["scorer"] = scorer.describe()
    return report

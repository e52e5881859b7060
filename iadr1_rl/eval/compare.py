"""Did a model improve? Changes with their standard errors, so "rose" means beyond noise.

Two prediction files for one test set (say PA-SFT and SC-GRPO) are matched by item id,
each item scored by the SC-GRPO reward in both, and each metric's change reported with
the standard error of the *paired* mean difference, std(after_i - before_i) / sqrt(n).
Pairing removes the items' own difficulty from the noise, so it is the honest yardstick
for "rose beyond noise" on one test set; treating the two runs as independent samples
overstates the noise (items both models get right, or both wrong, add none).

Metrics, as `metrics.item_metrics` defines them: answer accuracy and mean reward over
all items; location accuracy, type score and type category accuracy (the right kind of
defect in any wording) over the anomalous ones, gated on a `yes` answer as the reward is.

A training curve (say the reward per SC-GRPO step, each step on fresh prompts) gets
`fitted_rise`: the least-squares line through every step, its rise from the first step
to the last, and that rise's standard error, which uses every step rather than two
windows at the ends.

    >>> change = Change("type_score", 100, 0.50, 0.58, 0.02)
    >>> change.rose()
    True
    >>> round(fitted_rise("reward", [1.0, 1.2, 1.1, 1.3]).change, 6)
    0.24
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .answers import prediction_rows
from .metrics import item_metrics

METRICS = ("answer_accuracy", "mean_reward", "location_accuracy", "type_score", "type_category_accuracy")
# Why a metric can have no items: it is measured only where the labels give what it needs.
NO_ITEMS = {
    "location_accuracy": "no anomalous item has a location label (a dataset without masks, such as MMAD, has none)",
    "type_score": "no anomalous item has a type label",
    "type_category_accuracy": "no anomalous item has a type label",
}


@dataclass(frozen=True)
class Change:
    """`metric` went from `before` to `after` over `n` items (or steps), with the standard
    error of that change."""

    metric: str
    n: int
    before: float
    after: float
    standard_error: float

    @property
    def change(self) -> float:
        return self.after - self.before

    def rose(self, standard_errors: float = 2.0) -> bool:
        """True when the change is positive beyond `standard_errors` standard errors."""
        return self.change > standard_errors * self.standard_error

    def verdict(self) -> str:
        """`rose`, `fell` or `within noise` (two standard errors); `n/a` without items."""
        if self.n == 0:
            return "n/a"
        if self.rose():
            return "rose"
        return "fell" if self.change < -2 * self.standard_error else "within noise"

    def to_json(self) -> dict:
        """JSON-safe: a metric without items (NaN) is written as null."""
        row = {**asdict(self), "change": self.change, "rose": self.rose()}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}

    @classmethod
    def from_json(cls, row: dict, metric: str | None = None) -> Change:
        """The inverse of `to_json` (null back to NaN), optionally under another name."""
        values = {k: math.nan if row[k] is None else row[k] for k in ("before", "after", "standard_error")}
        return cls(metric or row["metric"], row["n"], **values)

    def describe(self) -> str:
        if self.n == 0:
            return f"{self.metric}: n/a ({NO_ITEMS.get(self.metric, 'no items')})"
        return (
            f"{self.metric}: {self.before:.3f} -> {self.after:.3f} "
            f"(change {self.change:+.3f}, 2 s.e. {2 * self.standard_error:.3f}, n {self.n})"
        )


def _paired(metric: str, pairs: list[tuple[float, float]]) -> Change:
    n = len(pairs)
    if n == 0:
        return Change(metric, 0, math.nan, math.nan, math.nan)
    differences = [after - before for before, after in pairs]
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1) if n > 1 else 0.0
    return Change(
        metric,
        n,
        sum(b for b, _ in pairs) / n,
        sum(a for _, a in pairs) / n,
        math.sqrt(variance / n),
    )


def fitted_rise(metric: str, values: list[float]) -> Change:
    """The least-squares line through `values` (one per step): its value at the first and
    last step, and the standard error of that rise (ordinary least squares)."""
    n = len(values)
    if n < 3:
        raise ValueError(f"a fitted rise needs at least 3 values, got {n}")
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    sxx = sum((x - mean_x) ** 2 for x in range(n))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sxx
    residuals = [y - mean_y - slope * (x - mean_x) for x, y in enumerate(values)]
    slope_error = math.sqrt(sum(r * r for r in residuals) / (n - 2) / sxx)
    span = n - 1
    return Change(metric, n, mean_y - slope * mean_x, mean_y + slope * (span - mean_x), slope_error * span)


def paired_changes(before: str | Path, after: str | Path, scorer=None) -> dict[str, Change]:
    """Each metric's change from `before` to `after` (prediction JSONL files of one test
    set), every item scored by `scorer` (default: the contract's)."""
    from rewards import Scorer

    required = ("id", "label", "output")
    first = {str(row["id"]): row for row in prediction_rows(before, required)}
    second = {str(row["id"]): row for row in prediction_rows(after, required)}
    if set(first) != set(second):
        only = sorted(set(first) ^ set(second))
        raise ValueError(f"{before} and {after} do not hold the same test items ({len(only)} differ, e.g. {only[:3]})")
    scorer = scorer or Scorer()
    pairs: dict[str, list[tuple[float, float]]] = {metric: [] for metric in METRICS}
    for item_id, row in first.items():
        was = item_metrics(row["output"], row["label"], scorer)
        now = item_metrics(second[item_id]["output"], row["label"], scorer)
        for metric, values in pairs.items():
            if metric in was:
                values.append((was[metric], now[metric]))
    return {metric: _paired(metric, values) for metric, values in pairs.items()}


def changes_json(changes: dict[str, Change]) -> dict[str, dict]:
    return {name: change.to_json() for name, change in changes.items()}

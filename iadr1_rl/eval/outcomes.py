"""What happened to each evaluated item, in the reward's terms: its answer outcome
(TP, FP, TN, FN, or no answer), whether its location or type was wrong and whether its
format broke; and a sample of a large set that keeps every outcome represented.

    >>> outcome_of("yes", "yes"), outcome_of("no", "yes"), outcome_of("yes", None)
    ('tp', 'fp', 'no-answer')
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rewards import SAME_CATEGORY_RULES, ScoreResult

# Filter keys, in the order the report shows them, with their labels.
OUTCOMES = {
    "tp": "true positive",
    "fn": "false negative",
    "tn": "true negative",
    "fp": "false positive",
    "no-answer": "no answer",
}
FLAWS = {
    "location-wrong": "location wrong",
    "type-wrong": "type wrong",
    "format-broken": "format broken",
}


def outcome_of(gold: str, predicted: str | None) -> str:
    """The answer outcome: an anomaly (`yes`) is the positive class."""
    if predicted is None:
        return "no-answer"
    return {("yes", "yes"): "tp", ("yes", "no"): "fn", ("no", "no"): "tn", ("no", "yes"): "fp"}[(gold, predicted)]


def flaws_of(score: ScoreResult, label_has_type: bool) -> list[str]:
    """What went wrong beyond the answer. Location and type count only where the reward
    scored them: a detected anomaly (the gate) whose label gives cells, or a type."""
    flaws = []
    if score.gated and score.label_cells and score.location < 1.0:
        flaws.append("location-wrong")
    if score.gated and label_has_type and score.type_rule not in SAME_CATEGORY_RULES:
        flaws.append("type-wrong")
    if score.consistency < 1.0:
        flaws.append("format-broken")
    return flaws


@dataclass
class ReportItem:
    """One prediction with its record's image and the reward's reasons."""

    id: str
    dataset: str
    label: dict
    output: str
    score: ScoreResult
    predicted: str | None  # the answer as evaluation reads it (`<answer>` tag), None: unparsed
    metrics: dict[str, float]  # the reward's view of the item (eval.metrics.score_metrics)
    outcome: str
    flaws: list[str] = field(default_factory=list)
    image: str | None = None  # the query image's path; None when the records do not have it
    category: str = ""

    @property
    def keys(self) -> list[str]:
        """Every filter the item belongs to."""
        return [self.outcome, *self.flaws]


def sample_items(items: Sequence[ReportItem], limit: int | None, seed: int = 0) -> list[ReportItem]:
    """At most `limit` items, in their original order, with every outcome and flaw present
    in `items` kept: first one item of each filter, then the rest drawn at random in
    proportion to each answer outcome's share."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    picked: list[int] = []  # in priority order: truncating it keeps what matters most
    for key in [*OUTCOMES, *FLAWS]:  # one of each kind first, so that rare kinds survive
        pick = next((i for i in order if key in items[i].keys and i not in picked), None)  # few keys: fine
        if pick is not None:
            picked.append(pick)
    by_outcome: dict[str, list[int]] = defaultdict(list)
    for i in order:
        if i not in picked:
            by_outcome[items[i].outcome].append(i)
    remaining, left = max(limit - len(picked), 0), len(items) - len(picked)
    for indices in by_outcome.values():
        picked.extend(indices[: int(remaining * len(indices) / left)])
    taken = set(picked)
    picked.extend(i for i in order if i not in taken)  # what rounding left, at random
    return [items[i] for i in sorted(picked[:limit])]

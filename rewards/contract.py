"""Preset `default`: the reward contract (docs/reward.md) as written.

R = w_c·R_c + w_a·R_a + 1[label yes ∧ â yes]·(w_l·R_l + w_t·R_t), with the exact tag
patterns, the single `<answer>`, the R×C grid and the multi-level type match.
"""

from __future__ import annotations

from .labels import Label, LabelInput, parse_label
from .location import Grid, cells_on_grid
from .patterns import ANOMALOUS_SEQUENCE, NORMAL_SEQUENCE, normalise_answer, parse_completion
from .result import ScoreResult, Weights
from .type_match import TypeMatcher


class ContractRules:
    """Scores one completion text against one parsed label by the contract."""

    name = "default"

    def __init__(self, grid: Grid, weights: Weights, type_matcher: TypeMatcher) -> None:
        self.grid = grid
        self.weights = weights
        self.type_matcher = type_matcher
        self._max_total = (weights.max_total(False), weights.max_total(True))

    def parse_label(self, label: LabelInput) -> Label:
        return parse_label(label, self.grid)

    def score(self, completion: str, label: Label) -> ScoreResult:
        w = self.weights
        parsed = parse_completion(completion)  # outer whitespace is checked, not copied away
        anomalous = label.answer == "yes"
        consistency = float(parsed.matches(ANOMALOUS_SEQUENCE if anomalous else NORMAL_SEQUENCE))
        answer = normalise_answer(parsed.single_content("answer"))
        accuracy = float(answer == label.answer)
        predicted_cells = cells_on_grid(parsed.single_content("location"), *self.grid)
        gated = anomalous and answer == "yes"
        location = type_value = 0.0
        type_rule = None
        if gated:
            location = float(bool(predicted_cells) and predicted_cells == label.cells)
            match = self.type_matcher.match(parsed.single_content("type"), label.type)
            type_value, type_rule = match.score, match.rule
        total = w.consistency * consistency + w.accuracy * accuracy + w.location * location + w.type * type_value
        # Positional: this runs once per rollout and keyword calls cost measurably more.
        return ScoreResult(
            consistency,
            accuracy,
            location,
            type_value,
            total,
            answer,
            predicted_cells,
            label.cells,
            type_rule,
            gated,
            self._max_total[anomalous],
        )

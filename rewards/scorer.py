"""The SC-GRPO reward: R = w_c·R_c + w_a·R_a + 1[label yes ∧ â yes]·(w_l·R_l + w_t·R_t).

One `Scorer` holds the grid, the weights and the type vocabulary; everything that
scores (the recipe, the CLI, the OpenRLHF reward file, the server) goes through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .labels import Label, LabelInput, parse_label
from .location import cells_on_grid, check_grid
from .patterns import ANOMALOUS_SEQUENCE, NORMAL_SEQUENCE, normalise_answer, parse_completion
from .type_match import TypeMatcher, TypeRuleScores
from .vocabulary import Vocabulary, read_mapping

PARTS = ("consistency", "accuracy", "location", "type")


@dataclass(frozen=True)
class Weights:
    consistency: float = 1.0
    accuracy: float = 1.0
    location: float = 1.0
    type: float = 1.0

    @classmethod
    def load(cls, value: Weights | Mapping[str, float] | Sequence[float] | None) -> Weights:
        if value is None:
            return cls()
        if isinstance(value, Weights):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(PARTS)
            if unknown:
                raise ValueError(f"weights: unknown parts {sorted(unknown)}; expected {list(PARTS)}")
            weights = cls(**{k: value[k] for k in value})
        else:
            values = list(value)
            if len(values) != 4:
                raise ValueError(f"weights: expected 4 values {list(PARTS)}, got {len(values)}")
            weights = cls(*values)
        for part in PARTS:
            w = getattr(weights, part)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"weights: {part} must be a finite number >= 0, got {w!r}")
        return weights


@dataclass(slots=True)  # built once per rollout: slots, not frozen, for speed
class ScoreResult:
    """Every part of one completion's reward, and what it was computed from.

    `location` and `type` are 0 unless the gate (label yes and answer yes) is open, so
    `total` is the weighted sum of the four parts.
    """

    consistency: float
    accuracy: float
    location: float
    type: float
    total: float
    answer: str | None
    predicted_cells: frozenset[int]
    label_cells: frozenset[int]
    type_rule: str | None
    gated: bool
    max_total: float

    @property
    def normalised(self) -> float:
        """`total / max_total`, in [0, 1]."""
        return self.total / self.max_total if self.max_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "consistency": self.consistency,
            "accuracy": self.accuracy,
            "location": self.location,
            "type": self.type,
            "total": self.total,
            "normalised": self.normalised,
            "answer": self.answer,
            "predicted_cells": sorted(self.predicted_cells),
            "label_cells": sorted(self.label_cells),
            "type_rule": self.type_rule,
            "gated": self.gated,
        }


@dataclass(frozen=True)
class GroupScore:
    """The G scores of one prompt's completions and their group-relative advantages."""

    scores: list[ScoreResult]
    advantages: list[float]
    has_signal: bool
    mean: float
    std: float


def group_advantages(rewards: Sequence[float], epsilon: float = 1e-4) -> tuple[list[float], float, float]:
    """A_i = (R_i − mean) / (std + ε), std the sample standard deviation (as torch.std).

    >>> group_advantages([1.0, 3.0])[0]
    [-0.7070567..., 0.7070567...]
    """
    n = len(rewards)
    if n == 0:
        return [], 0.0, 0.0
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else 0.0
    return [(r - mean) / (std + epsilon) for r in rewards], mean, std


def _as_text(completion: Any) -> str:
    """Any completion becomes text: a policy's output is never a caller error."""
    if completion is None:
        return ""
    if isinstance(completion, bytes):
        return completion.decode("utf-8", errors="replace")
    return completion if isinstance(completion, str) else str(completion)


@dataclass
class Scorer:
    """Scores completions against labels by REWARD_SPEC.

    >>> scorer = Scorer()
    >>> r = scorer.score(
    ...     "<think>a thin bright line</think><location>upper left</location>"
    ...     "<type>scratches</type><answer>yes</answer>",
    ...     {"answer": "yes", "location": "top-left corner", "type": "scratch"})
    >>> (r.consistency, r.accuracy, r.location, r.type, r.total, r.type_rule)
    (1.0, 1.0, 1.0, 1.0, 4.0, 'exact')
    """

    grid: tuple[int, int] = (3, 3)
    weights: Weights | Mapping[str, float] | Sequence[float] | None = None
    vocabulary: Vocabulary | Mapping[str, Any] | str | Path | None = None
    type_scores: TypeRuleScores | Mapping[str, float] | None = None
    epsilon: float = 1e-4
    type_matcher: TypeMatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.grid = check_grid(self.grid)
        self.weights = Weights.load(self.weights)
        self.vocabulary = Vocabulary.load(self.vocabulary)
        if isinstance(self.type_scores, Mapping):
            self.type_scores = TypeRuleScores(**self.type_scores)
        self.type_matcher = TypeMatcher(self.vocabulary, self.type_scores)
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon >= 0):
            raise ValueError(f"epsilon must be a number >= 0, got {self.epsilon!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | Path | None) -> Scorer:
        """Build from a mapping or a JSON/YAML file with keys grid, weights, vocabulary,
        type_scores, epsilon (all optional). A vocabulary path is relative to the file."""
        base = Path(".")
        if isinstance(config, (str, Path)):
            base = Path(config).parent
            config = read_mapping(Path(config))
        config = dict(config or {})
        unknown = set(config) - {"grid", "weights", "vocabulary", "type_scores", "epsilon"}
        if unknown:
            raise ValueError(f"scorer config: unknown keys {sorted(unknown)}")
        vocabulary = config.get("vocabulary")
        if isinstance(vocabulary, str):
            vocabulary = base / vocabulary
        return cls(
            grid=tuple(config.get("grid", (3, 3))),
            weights=config.get("weights"),
            vocabulary=vocabulary,
            type_scores=config.get("type_scores"),
            epsilon=config.get("epsilon", 1e-4),
        )

    def parse_label(self, label: LabelInput) -> Label:
        return parse_label(label, self.grid)

    def max_total(self, label: Label) -> float:
        w = self.weights
        base = w.consistency + w.accuracy
        return base + w.location + w.type if label.anomalous else base

    def score(self, completion: Any, label: LabelInput) -> ScoreResult:
        """Score one completion; only an invalid label raises (ValueError)."""
        return self._score(_as_text(completion), self.parse_label(label))

    def _score(self, completion: str, label: Label) -> ScoreResult:
        w = self.weights
        parsed = parse_completion(completion)  # outer whitespace is checked, not copied away
        consistency = float(parsed.matches(ANOMALOUS_SEQUENCE if label.anomalous else NORMAL_SEQUENCE))
        answer = normalise_answer(parsed.single_content("answer"))
        accuracy = float(answer == label.answer)
        predicted_cells = cells_on_grid(parsed.single_content("location"), *self.grid)
        gated = label.anomalous and answer == "yes"
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
            self.max_total(label),
        )

    def score_batch(self, completions: Sequence[Any], labels: Sequence[LabelInput]) -> list[ScoreResult]:
        """Score completion i against label i."""
        if len(completions) != len(labels):
            raise ValueError(f"score_batch: {len(completions)} completions but {len(labels)} labels")
        parsed_labels: dict[int, Label] = {}
        results = []
        for completion, label in zip(completions, labels):
            # Batches repeat each prompt's label G times: parse each label object once.
            key = id(label)
            if key not in parsed_labels:
                parsed_labels[key] = self.parse_label(label)
            results.append(self._score(_as_text(completion), parsed_labels[key]))
        return results

    def score_group(self, completions: Iterable[Any], label: LabelInput) -> GroupScore:
        """Score the G completions of one prompt and their group-normalised advantages."""
        parsed = self.parse_label(label)
        scores = [self._score(_as_text(c), parsed) for c in completions]
        totals = [s.total for s in scores]
        advantages, mean, std = group_advantages(totals, self.epsilon)
        has_signal = len(totals) > 1 and max(totals) != min(totals)
        return GroupScore(scores, advantages, has_signal, mean, std)

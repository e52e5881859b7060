"""What a score is: its four parts, their weights, and what they were computed from.

Every preset (`default`, `authors`) fills the same `ScoreResult`, so whatever reads a
reward (training, the server, evaluation, the integrations) reads it one way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PARTS = ("consistency", "accuracy", "location", "type")


@dataclass(frozen=True)
class Weights:
    """w_c, w_a, w_l, w_t of R = w_c·R_c + w_a·R_a + gate·(w_l·R_l + w_t·R_t)."""

    consistency: float = 1.0
    accuracy: float = 1.0
    location: float = 1.0
    type: float = 1.0

    @classmethod
    def load(
        cls, value: Weights | Mapping[str, float] | Sequence[float] | None, default: Weights | None = None
    ) -> Weights:
        """Weights from a mapping of parts (missing parts take `default`'s), 4 values, or None."""
        default = default or cls()
        if value is None:
            return default
        if isinstance(value, Weights):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(PARTS)
            if unknown:
                raise ValueError(f"weights: unknown parts {sorted(unknown)}; expected {list(PARTS)}")
            weights = cls(**{**asdict(default), **value})
        elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"weights: expected a mapping of {list(PARTS)} or 4 numbers, got {value!r}")
        else:
            values = list(value)
            if len(values) != 4:
                raise ValueError(f"weights: expected 4 values {list(PARTS)}, got {len(values)}")
            weights = cls(*values)
        for part in PARTS:
            w = getattr(weights, part)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"weights: {part} must be a finite number >= 0, got {w!r}")
        return cls(*(float(getattr(weights, part)) for part in PARTS))  # 1 and 1.0: one configuration

    def max_total(self, anomalous: bool) -> float:
        """The most a completion can earn against a normal or an anomalous label."""
        base = self.consistency + self.accuracy
        return base + self.location + self.type if anomalous else base


@dataclass(slots=True)  # built once per rollout: slots, not frozen, for speed
class ScoreResult:
    """Every part of one completion's reward, and what it was computed from.

    `location` and `type` are 0 unless `gated` (they counted), so `total` is the
    weighted sum of the four parts.
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

    def weighted(self, weights: Weights) -> dict[str, float]:
        """Each part times its weight (the gate already applied): the four sum to `total`."""
        return {part: getattr(weights, part) * getattr(self, part) for part in PARTS}

"""The SC-GRPO reward: R = w_c·R_c + w_a·R_a + 1[label yes ∧ â yes]·(w_l·R_l + w_t·R_t).

One `Scorer` holds a preset's rules (`default`: the contract; `authors`: the authors'
released reward), the grid, the weights and the type vocabulary; everything that scores
(training, evaluation, the CLI, the OpenRLHF reward file, the server, the framework
integrations) goes through it, and its `digest` names the configuration in use.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .authors import GRID as AUTHORS_GRID
from .authors import WEIGHTS as AUTHORS_WEIGHTS
from .authors import AuthorsRules
from .chat import completion_text
from .contract import ContractRules
from .labels import Label, LabelInput, label_key
from .location import check_grid
from .result import PARTS, ScoreResult, Weights
from .type_match import TypeMatcher, TypeRuleScores
from .vocabulary import Vocabulary, read_mapping

__all__ = [
    "PARTS",
    "PRESETS",
    "SCORER_CONFIG_ENV",
    "GroupScore",
    "ScoreResult",
    "Scorer",
    "Weights",
    "group_advantages",
]

PRESETS = ("default", "authors")
# The environment variable naming a run's scorer config (its scorer.json) in processes the
# run does not build itself: OpenRLHF's actors, framework workers, the server's workers.
SCORER_CONFIG_ENV = "IADR1_SCORER_CONFIG"
CONFIG_KEYS = ("preset", "grid", "weights", "vocabulary", "type_scores", "epsilon")
LABEL_CACHE_SIZE = 65536  # distinct labels kept parsed; a data set with more re-parses some


class RewardRules(Protocol):
    """What a preset provides: how it reads a label and scores one completion text."""

    name: str

    def parse_label(self, label: LabelInput) -> Label: ...

    def score(self, completion: str, label: Label) -> ScoreResult: ...


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


@dataclass
class Scorer:
    """Scores completions against labels by the reward contract, docs/reward.md (or another preset).

    >>> scorer = Scorer()
    >>> r = scorer.score(
    ...     "<think>a thin bright line</think><location>upper left</location>"
    ...     "<type>scratches</type><answer>yes</answer>",
    ...     {"answer": "yes", "location": "top-left corner", "type": "scratch"})
    >>> (r.consistency, r.accuracy, r.location, r.type, r.total, r.type_rule)
    (1.0, 1.0, 1.0, 1.0, 4.0, 'exact')
    >>> Scorer(preset="authors").score(
    ...     "<think>x</think><location>top left</location><type>scratch</type><answer>no</answer>",
    ...     {"answer": "yes", "location": "upper left", "type": "scratch"}).total  # wrong answer, partial credit
    2.0
    """

    grid: tuple[int, int] = (3, 3)
    weights: Weights | Mapping[str, float] | Sequence[float] | None = None
    vocabulary: Vocabulary | Mapping[str, Any] | str | Path | None = None
    type_scores: TypeRuleScores | Mapping[str, float] | None = None
    epsilon: float = 1e-4
    preset: str = "default"
    rules: RewardRules = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {self.preset!r}")
        self.grid = check_grid(self.grid)
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, (int, float)) or not self.epsilon >= 0:
            raise ValueError(f"epsilon must be a number >= 0, got {self.epsilon!r}")
        self.epsilon = float(self.epsilon)
        if self.preset == "authors":
            self._check_authors_settings()
            self.weights = Weights.load(self.weights, default=AUTHORS_WEIGHTS)
            self.vocabulary = None
            self.type_matcher = None
            self.rules = AuthorsRules(self.weights)
        else:
            self.weights = Weights.load(self.weights)
            self.vocabulary = Vocabulary.load(self.vocabulary)
            if isinstance(self.type_scores, Mapping):
                self._check_keys(self.type_scores, TypeRuleScores, "type_scores")
                self.type_scores = TypeRuleScores(**self.type_scores)
            self.type_matcher = TypeMatcher(self.vocabulary, self.type_scores)
            self.type_scores = self.type_matcher.scores
            self.rules = ContractRules(self.grid, self.weights, self.type_matcher)
        self._labels: dict[Any, Label] = {}
        self._digest: str | None = None

    def _check_authors_settings(self) -> None:
        fixed = {
            "grid": self.grid != AUTHORS_GRID,
            "vocabulary": self.vocabulary is not None,
            "type_scores": self.type_scores is not None,
        }
        changed = [name for name, differs in fixed.items() if differs]
        if changed:
            raise ValueError(
                f"preset 'authors' reproduces the authors' fixed 3x3 grid, vocabulary and type tiers; "
                f"it takes no {', '.join(changed)} (weights and epsilon may be set)"
            )

    @staticmethod
    def _check_keys(values: Mapping[str, Any], cls: type, where: str) -> None:
        unknown = set(values) - set(asdict(cls()))
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(asdict(cls()))}")

    # ----------------------------------------------------------------- configuration
    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | Path | None) -> Scorer:
        """Build from a mapping or a JSON/YAML file with keys preset, grid, weights,
        vocabulary, type_scores, epsilon (all optional). The preset comes first; the other
        keys change it. A vocabulary path is relative to the file."""
        base = Path(".")
        where = "scorer config"
        if isinstance(config, (str, Path)):
            base, where = Path(config).parent, f"scorer config {config}"
            config = read_mapping(Path(config))
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValueError(f"{where}: expected a mapping of {list(CONFIG_KEYS)}, got {type(config).__name__}")
        unknown = set(config) - set(CONFIG_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected {list(CONFIG_KEYS)}")
        vocabulary = config.get("vocabulary")
        if isinstance(vocabulary, str):
            vocabulary = base / vocabulary
        grid = config.get("grid", (3, 3))
        if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable):
            raise ValueError(f"{where}: grid must be [rows, columns], got {grid!r}")
        return cls(
            grid=tuple(grid),
            weights=config.get("weights"),
            vocabulary=vocabulary,
            type_scores=config.get("type_scores"),
            epsilon=config.get("epsilon", 1e-4),
            preset=config.get("preset", "default"),
        )

    def to_config(self) -> dict[str, Any]:
        """The resolved configuration (vocabulary inlined): `from_config` of it scores alike."""
        config: dict[str, Any] = {"preset": self.preset}
        if self.preset == "default":
            config.update(
                grid=list(self.grid),
                vocabulary={"groups": self.vocabulary.groups},
                type_scores=asdict(self.type_scores),
            )
        config.update(weights=asdict(self.weights), epsilon=self.epsilon)
        return config

    @property
    def digest(self) -> str:
        """A short fingerprint of the resolved configuration: equal digests score alike."""
        if self._digest is None:
            canonical = json.dumps(self.to_config(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self._digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
        return self._digest

    def describe(self) -> dict[str, str]:
        """What reports and `/health` show of the configuration in use."""
        return {"preset": self.preset, "digest": self.digest}

    # ------------------------------------------------------------------------ scoring
    def parse_label(self, label: LabelInput) -> Label:
        """A parsed label, from the cache when an equal label was parsed before."""
        key = label_key(label)
        if key is None:
            return self.rules.parse_label(label)
        parsed = self._labels.get(key)
        if parsed is None:
            parsed = self.rules.parse_label(label)
            if len(self._labels) >= LABEL_CACHE_SIZE:
                self._labels.clear()  # bounded; clear() is atomic under concurrent callers
            self._labels[key] = parsed
        return parsed

    def max_total(self, label: Label) -> float:
        return self.weights.max_total(label.anomalous)

    def score(self, completion: Any, label: LabelInput) -> ScoreResult:
        """Score one completion. An invalid label raises ValueError; a completion that is
        neither text, bytes, None nor chat messages raises TypeError."""
        return self.rules.score(completion_text(completion), self.parse_label(label))

    def score_batch(self, completions: Iterable[Any], labels: Iterable[LabelInput]) -> list[ScoreResult]:
        """Score completion i against label i (any iterables: lists, arrays, Series, generators)."""
        completions, labels = list(completions), list(labels)
        if len(completions) != len(labels):
            raise ValueError(f"score_batch: {len(completions)} completions but {len(labels)} labels")
        score, parse = self.rules.score, self.parse_label
        return [score(completion_text(c), parse(label)) for c, label in zip(completions, labels)]

    def score_group(self, completions: Iterable[Any], label: LabelInput) -> GroupScore:
        """Score the G completions of one prompt and their group-normalised advantages."""
        parsed = self.parse_label(label)
        scores = [self.rules.score(completion_text(c), parsed) for c in completions]
        totals = [s.total for s in scores]
        advantages, mean, std = group_advantages(totals, self.epsilon)
        has_signal = len(totals) > 1 and max(totals) != min(totals)
        return GroupScore(scores, advantages, has_signal, mean, std)

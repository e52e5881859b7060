"""Multi-level fuzzy type match R_t (docs/reward.md "Type").

The first rule that applies scores a predicted type against the label's type:
empty → ambiguous → group mismatch → group name → exact → semantic → category →
same group → fuzzy → none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

from rapidfuzz import fuzz, process

from .vocabulary import Term, Vocabulary, normalise_type

_CACHE_LIMIT = 1024  # longer texts are matched without entering the caches
# docs/reward.md "Type" (length bound): fuzzy similarity only for normalised texts this short; it keeps
# every score linear in what a policy or a label holds (a ratio of two 1 MB texts took 27 s).
FUZZY_LENGTH_LIMIT = 256


@dataclass(frozen=True)
class TypeRuleScores:
    """The value of each rule (spec defaults) and the fuzzy thresholds."""

    group_name: float = 0.3
    exact: float = 1.0
    semantic: float = 0.85
    category_base: float = 0.6
    category_bonus: float = 0.25
    same_group: float = 0.3
    fuzzy_factor: float = 0.4
    fuzzy_threshold: float = 0.7
    category_fuzzy_threshold: float = 0.7

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"type_scores: {item.name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, item.name, float(value))
        for name in ("fuzzy_threshold", "category_fuzzy_threshold"):
            if getattr(self, name) > 1:
                raise ValueError(f"type_scores: {name} is a similarity in [0, 1], got {getattr(self, name)!r}")


# The rules that mean the label's kind of defect, in any of its vocabulary's wordings: the
# label's own term, a phrase containing it, or a synonym of its category.
SAME_CATEGORY_RULES = frozenset({"exact", "semantic", "category"})


@dataclass(frozen=True)
class TypeMatch:
    """A type score and the name of the rule that produced it."""

    score: float
    rule: str


@dataclass(frozen=True)
class TextCategory:
    """What the vocabulary says of one normalised text."""

    category: str | None
    confidence: float
    group: str | None
    is_group_name: bool
    ambiguous: bool


def _contains_words(outer: str, inner: str) -> bool:
    """True when `inner`'s words stand contiguously in `outer` (both normalised)."""
    return f" {inner} " in f" {outer} "


class TypeMatcher:
    """Scores predicted types against label types with one vocabulary.

    >>> matcher = TypeMatcher()
    >>> matcher.match("Scratches", "scratch")
    TypeMatch(score=1.0, rule='exact')
    >>> matcher.match("scratch and grinding damage", "scratch").rule
    'ambiguous'
    """

    def __init__(self, vocabulary: Vocabulary | None = None, scores: TypeRuleScores | None = None) -> None:
        self.vocabulary = vocabulary or Vocabulary()
        self.scores = scores or TypeRuleScores()
        self._describe_cached = lru_cache(maxsize=32768)(self._describe)
        self._match_cached = lru_cache(maxsize=65536)(self._match)

    # -- what a text is -------------------------------------------------------------
    def describe(self, normalised: str) -> TextCategory:
        if len(normalised) <= _CACHE_LIMIT:
            return self._describe_cached(normalised)
        return self._describe(normalised)

    def _describe(self, text: str) -> TextCategory:
        vocab = self.vocabulary
        categories, longest = self._scan(text)
        group_name = vocab.group_names.get(text)
        category, confidence = self._category(text, longest)
        group = group_name or (vocab.category_group[category] if category else None)
        return TextCategory(category, confidence, group, group_name is not None, len(categories) >= 2)

    def _scan(self, text: str) -> tuple[set[str], Term | None]:
        """One pass over the terms standing word-wise in `text`: the categories of the
        maximal ones (a term inside a longer term found at the same place does not count:
        `grinding damage` hides its `damage`), and the longest one (the first on ties)."""
        words = text.split()
        by_first_word = self.vocabulary.terms_by_first_word  # longest term first
        categories: set[str] = set()
        longest: Term | None = None
        furthest_end = -1
        # Only words that begin a term are looked at (a C-speed filter: texts can be long).
        for start in [i for i, word in enumerate(words) if word in by_first_word]:
            for term in by_first_word[words[start]]:
                end = start + len(term.words)
                if end - start > 1 and tuple(words[start:end]) != term.words:
                    continue
                if end > furthest_end:  # finds come by start, then longest first
                    categories.add(term.category)
                    furthest_end = end
                if longest is None or len(term.text) > len(longest.text):
                    longest = term
        return categories, longest

    def _category(self, text: str, longest: Term | None) -> tuple[str | None, float]:
        vocab = self.vocabulary
        if text in vocab.term_category:
            return vocab.term_category[text], 1.0
        best: tuple[float, str] | None = None
        if longest is not None:  # the best term inside the text is the longest
            best = (len(longest.text) / len(text), longest.category)
        if len(text.split()) <= vocab.longest_term_words:  # the text inside a term
            for term in vocab.terms:
                if len(term.text) > len(text) and _contains_words(term.text, text):
                    confidence = len(text) / len(term.text)
                    if best is None or confidence > best[0]:
                        best = (confidence, term.category)
        if best is not None:
            return best[1], best[0]
        if len(text) > FUZZY_LENGTH_LIMIT:
            return None, 0.0
        cutoff = 100 * self.scores.category_fuzzy_threshold
        found = process.extractOne(text, vocab.term_texts, scorer=fuzz.ratio, score_cutoff=cutoff)
        if found is None:
            return None, 0.0
        return vocab.terms[found[2]].category, found[1] / 100

    # -- the rules --------------------------------------------------------------------
    def match(self, prediction: str | None, label: str | None) -> TypeMatch:
        """Score `prediction` against `label` by the first rule that applies."""
        prediction, label = prediction or "", label or ""
        if len(prediction) <= _CACHE_LIMIT and len(label) <= _CACHE_LIMIT:
            return self._match_cached(prediction, label)
        return self._match(prediction, label)

    def _match(self, prediction: str, label: str) -> TypeMatch:
        s = self.scores
        pred, gold = normalise_type(prediction), normalise_type(label)
        if not pred or not gold:
            return TypeMatch(0.0, "empty")
        p, g = self.describe(pred), self.describe(gold)
        if p.ambiguous:
            return TypeMatch(0.0, "ambiguous")
        if p.group and g.group and p.group != g.group:
            return TypeMatch(0.0, "group_mismatch")
        if p.is_group_name != g.is_group_name:
            named, other = (p, g) if p.is_group_name else (g, p)
            if other.category and self.vocabulary.category_group[other.category] == named.group:
                return TypeMatch(s.group_name, "group_name")
        if pred == gold:
            return TypeMatch(s.exact, "exact")
        if _contains_words(pred, gold) or _contains_words(gold, pred):
            return TypeMatch(s.semantic, "semantic")
        if p.category and g.category:
            if p.category == g.category:
                bonus = s.category_bonus * min(p.confidence, g.confidence)
                return TypeMatch(s.category_base + bonus, "category")
            if self.vocabulary.category_group[p.category] == self.vocabulary.category_group[g.category]:
                return TypeMatch(s.same_group, "same_group")
        if len(pred) > FUZZY_LENGTH_LIMIT or len(gold) > FUZZY_LENGTH_LIMIT:
            return TypeMatch(0.0, "none")
        similarity = fuzz.ratio(pred, gold, score_cutoff=100 * s.fuzzy_threshold) / 100
        if similarity >= s.fuzzy_threshold:
            return TypeMatch(s.fuzzy_factor * similarity, "fuzzy")
        return TypeMatch(0.0, "none")


@lru_cache(maxsize=1)
def _default_matcher() -> TypeMatcher:
    return TypeMatcher()


def type_score(prediction: str | None, label: str | None) -> float:
    """R_t with the default vocabulary and rule values.

    >>> type_score("Scratches", "scratch"), type_score("stain", "dirt"), type_score("hole", "scratch")
    (1.0, 0.85, 0.0)
    """
    return _default_matcher().match(prediction, label).score

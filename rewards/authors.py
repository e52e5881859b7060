"""Preset `authors`: the reward of the authors' released SC-GRPO code, in linear time.

The IAD-R1 authors train SC-GRPO (repository Yanhui-Lee/IAD-R1, `train/stage_rl/
reward.py` and `reward_process/`) with two reward functions that their trainer sums: a
consistency reward and an accuracy reward, the latter calling a 3 × 3 location
arithmetic and a tiered type match. This preset gives their values, for users who
reproduce the paper exactly or compare the two rewards in one recipe. Their regular
expressions backtrack quadratically on tag soup; every search here is a linear `find`.

As parts of a `ScoreResult` (weights 1, 1, 0.5, 0.5; location and type counted for
every anomalous label, whatever the answer):

- consistency, by the label's answer: normal, no `<location>` or `<type>` anywhere and
  `<think>…</think><answer>…</answer>` somewhere; anomalous,
  `<think>…</think><location>…</location><type>…</type><answer>…</answer>` somewhere
  (nothing but the tags between the pairs, anything around);
- accuracy: 1 when the first `<answer>…</answer>` on one line holds the label's answer
  (stripped, lowercased);
- location: both sides' first `<location>` text mapped to one cell by their arithmetic
  (start at the centre; `left`/`right` and `top`/`upper`, `bottom`/`lower` anywhere in
  the text, as substrings); 1 when the cells agree;
- type: their tiers (group mismatch 0, group name 0.3, exact 1, substring 0.85, same
  category 0.6 + 0.25 · confidence, same group 0.3, difflib ratio ≥ 0.7 → 0.4 · ratio).

The only difference from their code: difflib compares a predicted type with the label's
only while the two normalised texts hold at most 2,048 characters together (past that,
difflib's cost grows with their product: seconds at 16 KB); longer pairs whose quick
ratio reaches 0.7 are taken as below it. Their `print` calls are not reproduced (a
completion that stdout could not encode made their reward 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from difflib import SequenceMatcher
from functools import lru_cache

from .labels import Label, LabelInput, check_cells, decode_json_label, label_answer, label_text
from .location import cells_to_text
from .result import ScoreResult, Weights
from .type_match import TypeMatch
from .vocabulary import DEFAULT_GROUPS

WEIGHTS = Weights(1.0, 1.0, 0.5, 0.5)  # their accuracy reward adds (R_t + R_l) / 2
GRID = (3, 3)
NORMAL_TAGS = ("<think>", "</think><answer>", "</answer>")
ANOMALOUS_TAGS = ("<think>", "</think><location>", "</location><type>", "</type><answer>", "</answer>")
# Their group names, singular and plural.
GROUP_NAMES = {
    "surface anomaly": ("surface anomalies", "surface anomaly"),
    "structural anomaly": ("structural anomalies", "structural anomaly"),
}
FUZZY_THRESHOLD = 0.7
DIFFLIB_LIMIT = 2048  # characters of both texts together (see the module docstring)
_CACHE_LIMIT = 1024


# ------------------------------------------------------------------ text searches
def first_content(text: str, name: str) -> str | None:
    """What `re.search(r"<name>(.*?)</name>", text)` captures (`.` stops at a newline).

    The leftmost `<name>` whose line holds a later `</name>`; if the first `<name>` of a
    line has none, no later one of that line can.

    >>> first_content("<answer>no</answer><answer>yes</answer>", "answer")
    'no'
    >>> first_content("<answer>\\nyes</answer>", "answer") is None
    True
    """
    opening, closing = f"<{name}>", f"</{name}>"
    start = text.find(opening)
    while start != -1:
        inner = start + len(opening)
        line_end = text.find("\n", inner)
        end = text.find(closing, inner, len(text) if line_end == -1 else line_end)
        if end != -1:
            return text[inner:end]
        if line_end == -1:
            return None
        start = text.find(opening, line_end + 1)
    return None


def contains_in_order(text: str, pieces: tuple[str, ...]) -> bool:
    """Whether the pieces occur in order without overlapping (what `.*a.*?b.*?c.*`
    fullmatches with DOTALL): the earliest occurrence of each is always the best choice.

    >>> contains_in_order("x<think>a</think><answer>no</answer>y", NORMAL_TAGS)
    True
    """
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        if found == -1:
            return False
        position = found + len(piece)
    return True


def matches_normal(text: str) -> bool:
    return "<location>" not in text and "<type>" not in text and contains_in_order(text, NORMAL_TAGS)


def matches_anomalous(text: str) -> bool:
    return contains_in_order(text, ANOMALOUS_TAGS)


def grid_position(text: str) -> int:
    """Their 3 × 3 arithmetic: the centre (5), one column left/right, one row up/down.

    >>> grid_position("upper left"), grid_position("somewhere"), grid_position("bright spot")
    (1, 5, 6)
    """
    text = text.lower().strip()
    position = 5
    if "left" in text:
        position -= 1
    elif "right" in text:
        position += 1
    if "top" in text or "upper" in text:
        position -= 3
    elif "bottom" in text or "lower" in text:
        position += 3
    return max(1, min(9, position))


# ---------------------------------------------------------------------- type tiers
_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s-]")  # the stdlib engine, as theirs: `\w` is the same set


def normalise(text: str) -> str:
    """Lowercase, strip, whitespace runs to one space, then drop all but word characters,
    whitespace and `-` (no stemming; spaces left by dropped characters stay)."""
    if not text:
        return ""
    return _NOT_WORD.sub("", _SPACES.sub(" ", text.lower().strip()))


def _keyword_categories() -> dict[str, str]:
    table: dict[str, str] = {}
    for categories in DEFAULT_GROUPS.values():
        for category, terms in categories.items():
            for keyword in (category, *terms):
                table[normalise(keyword)] = category  # insertion order decides ties, as theirs
    return table


class AuthorsTypeMatcher:
    """Their tiered type reward over the paper's 8 categories in 2 groups.

    >>> AuthorsTypeMatcher().match("scratches", "scratch")
    TypeMatch(score=0.85, rule='semantic')
    """

    def __init__(self) -> None:
        self.keywords = _keyword_categories()
        self.category_group = {c: g for g, categories in DEFAULT_GROUPS.items() for c in categories}
        self.group_names = {normalise(name): group for group, names in GROUP_NAMES.items() for name in names}
        self._category_cached = lru_cache(maxsize=16384)(self._category)
        self._match_cached = lru_cache(maxsize=65536)(self._match)

    def category(self, text: str) -> tuple[str | None, float]:
        """(category, confidence) of a normalised text: an exact keyword, else the
        keyword in it or it in a keyword with the best length ratio, else the best
        difflib ratio of at least 0.7."""
        return self._category_cached(text) if len(text) <= _CACHE_LIMIT else self._category(text)

    def _category(self, text: str) -> tuple[str | None, float]:
        if text in self.keywords:
            return self.keywords[text], 1.0
        best_category, best = None, 0.0
        for keyword, category in self.keywords.items():
            if text in keyword or keyword in text:
                confidence = min(len(text), len(keyword)) / max(len(text), len(keyword))
                if confidence > best:
                    best_category, best = category, confidence
        if best_category:
            return best_category, best
        for keyword, category in self.keywords.items():
            similarity = _similarity(text, keyword)
            if similarity is not None and similarity >= FUZZY_THRESHOLD and similarity > best:
                best_category, best = category, similarity
        return best_category, best

    def match(self, predicted: str, actual: str) -> TypeMatch:
        """Score a predicted type (the tag's text, stripped and lowercased) against the label's."""
        if len(predicted) <= _CACHE_LIMIT and len(actual) <= _CACHE_LIMIT:
            return self._match_cached(predicted, actual)
        return self._match(predicted, actual)

    def _match(self, predicted: str, actual: str) -> TypeMatch:
        if not predicted or not actual:
            return TypeMatch(0.0, "empty")
        pred, gold = normalise(predicted), normalise(actual)
        pred_named, gold_named = self.group_names.get(pred), self.group_names.get(gold)
        pred_category, pred_confidence = self.category(pred)
        gold_category, gold_confidence = self.category(gold)
        pred_group = pred_named or self.category_group.get(pred_category)
        gold_group = gold_named or self.category_group.get(gold_category)
        if pred_group and gold_group and pred_group != gold_group:
            return TypeMatch(0.0, "group_mismatch")
        if (pred_named and not gold_named and gold_group == pred_named) or (
            gold_named and not pred_named and pred_group == gold_named
        ):
            return TypeMatch(0.3, "group_name")
        if pred == gold:
            return TypeMatch(1.0, "exact")
        if pred in gold or gold in pred:  # substrings, not words; an empty text is in every text
            return TypeMatch(0.85, "semantic")
        if pred_category and gold_category:
            if pred_category == gold_category:
                # Their expression, term for term, so that the value is theirs to the last bit.
                return TypeMatch(0.6 + (0.85 - 0.6) * min(pred_confidence, gold_confidence), "category")
            if self.category_group[pred_category] == self.category_group[gold_category]:
                return TypeMatch(0.3, "same_group")
        similarity = _similarity(pred, gold, DIFFLIB_LIMIT)
        if similarity is not None and similarity >= FUZZY_THRESHOLD:
            return TypeMatch(similarity * 0.4, "fuzzy")
        return TypeMatch(0.0, "none")


def _similarity(a: str, b: str, limit: int | None = None) -> float | None:
    """difflib's ratio of a and b, or None when it is certainly below the threshold
    (its length bound, then its character-count bound, both exact upper bounds) or
    when the two texts together exceed `limit` characters."""
    total = len(a) + len(b)
    if total and 2.0 * min(len(a), len(b)) / total < FUZZY_THRESHOLD:
        return None
    matcher = SequenceMatcher(None, a, b)
    if matcher.quick_ratio() < FUZZY_THRESHOLD or (limit is not None and total > limit):
        return None
    return matcher.ratio()


# ---------------------------------------------------------------------------- labels
def parse_authors_label(label: LabelInput) -> Label:
    """A label as their code reads it: answer, the cell of its location text (none when
    it has no location) and its type text, stripped and lowercased.

    A solution string is read with their searches (the first `<answer>` on one line, or
    the whole text when there is none); a dict as the solution string it stands for
    (explicit cells described in words their arithmetic maps back).

    >>> parse_authors_label("<think>t</think><location>Upper Left</location><type>Hole</type><answer>yes</answer>")
    Label(answer='yes', cells=frozenset({1}), type='hole', location='upper left')
    """
    if isinstance(label, Label):
        return label
    decoded = decode_json_label(label)
    if isinstance(decoded, str):
        return _from_solution(decoded)
    return _from_mapping(decoded)


def _from_solution(text: str) -> Label:
    content = first_content(text, "answer")
    answer = (text if content is None else content).strip().lower()
    if answer not in ("yes", "no"):
        shown = answer if len(answer) <= 80 else answer[:80] + "…"
        raise ValueError(f"label: answer must be 'yes' or 'no' (first <answer> on one line), got {shown!r}")
    location = first_content(text, "location")
    kind = first_content(text, "type")
    return _label(answer, None if location is None else location.strip().lower(), (kind or "").strip().lower())


def _from_mapping(label: Mapping) -> Label:
    answer = label_answer(label)
    kind = label_text(label, "type").lower()
    location = label.get("location")
    cells = label.get("cells")
    if cells is None and isinstance(location, (list, tuple)):
        cells, location = location, None
    if cells is not None:
        described = check_cells(cells, GRID)
        text = cells_to_text(described, GRID) if described else None
    else:
        text = label_text(label, "location").lower() or None
    return _label(answer, text, kind)


def _label(answer: str, location: str | None, kind: str) -> Label:
    cells = frozenset() if location is None else frozenset({grid_position(location)})
    return Label(answer, cells, kind, location or "")


# ----------------------------------------------------------------------------- score
class AuthorsRules:
    """Scores one completion text against one label as their released code does."""

    name = "authors"

    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.types = AuthorsTypeMatcher()
        self._max_total = (weights.max_total(False), weights.max_total(True))

    def parse_label(self, label: LabelInput) -> Label:
        return parse_authors_label(label)

    def score(self, completion: str, label: Label) -> ScoreResult:
        w = self.weights
        anomalous = label.answer == "yes"
        consistency = float(matches_anomalous(completion) if anomalous else matches_normal(completion))
        content = first_content(completion, "answer")
        answer = None if content is None else content.strip().lower()
        accuracy = float(answer == label.answer)
        location_text = first_content(completion, "location")
        predicted_cells = frozenset() if location_text is None else frozenset({grid_position(location_text)})
        location = type_value = 0.0
        type_rule = None
        if anomalous:  # no gate: location and type earn credit whatever the answer
            location = float(bool(predicted_cells) and bool(label.cells) and predicted_cells == label.cells)
            kind = first_content(completion, "type")
            if kind is None:
                type_rule = "no_tag"
            else:
                match = self.types.match(kind.strip().lower(), label.type)
                type_value, type_rule = match.score, match.rule
        total = w.consistency * consistency + w.accuracy * accuracy + w.location * location + w.type * type_value
        return ScoreResult(
            consistency,
            accuracy,
            location,
            type_value,
            total,
            answer if answer in ("yes", "no") else None,
            predicted_cells,
            label.cells,
            type_rule,
            anomalous,
            self._max_total[anomalous],
        )

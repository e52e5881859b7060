"""Output patterns P_N and P_A (docs/reward.md "Format consistency") and answer extraction.

Why no `fullmatch` regex: a policy under optimisation emits tag soup, and the obvious
`<think>(.*?)</think>\\s*<answer>…` patterns backtrack quadratically on it. Instead one
linear scan finds every literal tag, and the checks run over that list of tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One alternation of literals, captured: `split` cuts the text at every tag in one
# linear pass (no quantifier can backtrack: a match is at most 11 characters) and keeps
# the tags, so parts alternate text, tag, text, …, text. The stdlib engine is the
# faster one for this.
_TAG_SPLIT_RE = re.compile(r"(</?(?:think|location|type|answer)>)")

NORMAL_SEQUENCE = ("think", "answer")
ANOMALOUS_SEQUENCE = ("think", "location", "type", "answer")


def _tag_sequence(names: tuple[str, ...]) -> list[str]:
    return [tag for name in names for tag in (f"<{name}>", f"</{name}>")]


_SEQUENCE_TAGS = {sequence: _tag_sequence(sequence) for sequence in (NORMAL_SEQUENCE, ANOMALOUS_SEQUENCE)}


@dataclass(frozen=True)
class ParsedCompletion:
    """A completion cut at its literal tags: `parts[1::2]` are the tags, in order, and
    `parts[0::2]` the texts around them."""

    parts: list[str]
    tags: list[str]

    def matches(self, sequence: tuple[str, ...]) -> bool:
        """True when the text is exactly `<a>…</a><b>…</b>…` for `sequence`.

        Each pair appears once, in order, with only whitespace between and around the
        pairs, and each content is non-empty after stripping. Any other literal tag
        anywhere (inside a content included) breaks the match.
        """
        expected = _SEQUENCE_TAGS.get(sequence) or _tag_sequence(sequence)
        if self.tags != expected:
            return False
        # Texts alternate: outside (whitespace only), inside (non-empty), outside, …
        inside = False
        for text in self.parts[0::2]:
            if bool(text.strip()) != inside:
                return False
            inside = not inside
        return True

    def single_content(self, name: str) -> str | None:
        """Content of the one `<name>…</name>` pair, or None for zero or several pairs."""
        tags = self.tags
        opening, closing = f"<{name}>", f"</{name}>"
        if tags.count(opening) != 1 or tags.count(closing) != 1:
            return None
        start, end = tags.index(opening), tags.index(closing)
        if end < start:
            return None
        return "".join(self.parts[2 * start + 2 : 2 * end + 1])


def parse_completion(text: str) -> ParsedCompletion:
    """Cut `text` at every literal tag in one linear pass.

    >>> parse_completion("<think>x</think><answer>no</answer>").tags
    ['<think>', '</think>', '<answer>', '</answer>']
    """
    parts = _TAG_SPLIT_RE.split(text)
    return ParsedCompletion(parts, parts[1::2])


def matches_normal_pattern(text: str) -> bool:
    """P_N: `<think>T</think><answer>A</answer>` and nothing else.

    >>> matches_normal_pattern("<think>clean surface</think> <answer>no</answer>")
    True
    >>> matches_normal_pattern("<think>x</think><location>top</location><answer>no</answer>")
    False
    """
    return parse_completion(text).matches(NORMAL_SEQUENCE)


def matches_anomalous_pattern(text: str) -> bool:
    """P_A: `<think>T</think><location>L</location><type>Y</type><answer>A</answer>`.

    >>> matches_anomalous_pattern(
    ...     "<think>a dark spot</think><location>top left</location>"
    ...     "<type>hole</type><answer>yes</answer>")
    True
    """
    return parse_completion(text).matches(ANOMALOUS_SEQUENCE)


def normalise_answer(content: str | None) -> str | None:
    """`yes`/`no` from an answer content (lowercased, stripped, trailing `.`/`!` dropped).

    >>> normalise_answer(" Yes. "), normalise_answer("maybe"), normalise_answer(None)
    ('yes', None, None)
    """
    if content is None:
        return None
    value = content.strip().lower().rstrip(".!").strip()
    return value if value in ("yes", "no") else None


def extract_answer(text: str) -> str | None:
    """The predicted answer â: `yes`, `no`, or None (docs/reward.md "Answer accuracy").

    >>> extract_answer("<answer>No!</answer>"), extract_answer("<answer>yes</answer><answer>no</answer>")
    ('no', None)
    """
    return normalise_answer(parse_completion(text).single_content("answer"))

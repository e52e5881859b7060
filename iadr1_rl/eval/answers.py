"""Answer extraction: from the `<answer>` tag for IAD-R1 models, from a plain yes/no or
an MMAD option letter (A = Yes, B = No) for base models. None = unparseable."""

from __future__ import annotations

import re

from rewards import extract_answer

FORMATS = ("tags", "plain")
_LETTER = re.compile(r"^\W*(?:answer\s*[:：]?\s*)?\(?([ab])\)?(?:[.:)\s]|$)", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def extract_prediction(output: str, fmt: str = "tags") -> str | None:
    """`yes`, `no` or None.

    >>> extract_prediction("<think>t</think><answer>yes</answer>")
    'yes'
    >>> extract_prediction("No, the surface is clean.", "plain"), extract_prediction("B. No.", "plain")
    ('no', 'no')
    >>> extract_prediction("I cannot tell.", "plain") is None
    True
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    tagged = extract_answer(output or "")
    if fmt == "tags" or tagged is not None:
        return tagged
    text = (output or "").strip()
    letter = _LETTER.match(text)
    if letter:
        return "yes" if letter.group(1).lower() == "a" else "no"
    word = _YES_NO.search(text)
    return word.group(1).lower() if word else None

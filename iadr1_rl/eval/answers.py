"""Answer extraction: from the `<answer>` tag for IAD-R1 models, from a plain yes/no or
an MMAD option letter (A = Yes, B = No) for base models. None = unparseable."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def read_predictions(path: Path, fmt: str) -> list[tuple[str, str, str | None]]:
    """(dataset, label answer, extracted answer) for each line of a predictions file."""
    if not path.is_file():
        raise FileNotFoundError(f"predictions not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                predicted = extract_prediction(row["output"], fmt)
                rows.append((row.get("dataset") or "unknown", row["label"]["answer"], predicted))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a prediction line ({error})") from error
    return rows

"""Answer extraction: from the `<answer>` tag for IAD-R1 models, from a plain yes/no or
an MMAD option letter (A = Yes, B = No) for base models. None = unparseable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rewards import extract_answer
from rewards.files import open_input

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


def prediction_rows(path: str | Path, required: tuple[str, ...] = ("label", "output")) -> list[dict]:
    """The rows of a predictions file (`-`: stdin; `iadr1-eval run` writes `id`, `dataset`,
    `label`, `output`); a missing file, bad JSON or a row without a `required` key is named."""
    path = Path(path)
    rows = []
    with open_input(path, what="predictions", hint="make them with `iadr1-eval run`") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a prediction line ({error})") from error
            missing = [key for key in required if not isinstance(row, dict) or key not in row]
            if missing:
                raise ValueError(f"{path}:{number}: not a prediction line (lacks {missing})")
            rows.append(row)
    return rows


def read_predictions(predictions: list[dict], fmt: str, path: str | Path) -> list[tuple[str, str, str | None]]:
    """(dataset, label answer, extracted answer) for each row of the predictions file `path`."""
    rows = []
    for number, row in enumerate(predictions, start=1):
        try:
            rows.append(
                (row.get("dataset") or "unknown", row["label"]["answer"], extract_prediction(row["output"], fmt))
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: prediction {number}: label without an answer ({error})") from error
    return rows

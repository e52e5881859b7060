"""`iadr1-data validate FILE`: every problem of a records file, with its line number.

Two levels: an error makes a record unusable or wrong (unreadable, bad label, missing
image, a response that contradicts its label); a warning is usable but weaker than it
could be (an anomalous label without a location scores location 0). A file whose
anomalous records all lack a location is a dataset without masks (MMAD): one note says
so instead of a warning per record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rewards import Scorer
from rewards.files import folder_of, open_input
from rewards.patterns import ANOMALOUS_SEQUENCE, NORMAL_SEQUENCE, normalise_answer, parse_completion

from .records import MAKE_RECORDS, Record

ERROR, WARNING = "error", "warning"
NO_LOCATION = "anomalous label without a location (no cells, or text naming no direction): its location reward is 0"
NO_MASKS = (
    "no anomalous record has a location: a dataset without masks (e.g. MMAD). Location rewards will be 0 "
    "for every item; score answer and type only (weights.location=0), or convert a dataset with masks"
)


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    level: str = ERROR

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.level}: {where}{self.message}"


def record_problems(record: Record, scorer: Scorer, check_images: bool = True) -> list[tuple[str, str]]:
    """(level, message) for what is wrong with one parsed record (images, label, response)."""
    problems = []
    if check_images:
        for image in record.images:
            if not Path(image).is_file():
                problems.append((ERROR, f"image not found: {image}"))
    try:
        label = scorer.parse_label(record.label)
    except ValueError as error:
        problems.append((ERROR, str(error)))
        return problems
    if label.anomalous and not label.cells:
        problems.append((WARNING, NO_LOCATION))
    if record.response is not None:
        parsed = parse_completion(record.response.strip())
        sequence = ANOMALOUS_SEQUENCE if label.anomalous else NORMAL_SEQUENCE
        if not parsed.matches(sequence):
            kind = "anomalous" if label.anomalous else "normal"
            problems.append((ERROR, f"response does not follow the {kind} tag pattern of its label"))
        answer = normalise_answer(parsed.single_content("answer"))
        if answer != label.answer:
            problems.append((ERROR, f"response answers {answer!r} but the label says {label.answer!r}"))
    return problems


def validate_file(path: str | Path, check_images: bool = True) -> tuple[int, list[Problem]]:
    """(records read, problems) for a JSONL records file; never stops at the first."""
    base = folder_of(path)
    scorer = Scorer()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    count = anomalous = 0
    with open_input(path, what="records file", hint=MAKE_RECORDS) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            count += 1
            try:
                record = Record.from_json(json.loads(line), base)
            except json.JSONDecodeError as error:
                problems.append(Problem(number, f"invalid JSON ({error.msg})"))
                continue
            except ValueError as error:
                problems.append(Problem(number, str(error)))
                continue
            if record.id in seen:
                problems.append(Problem(number, f"id {record.id!r} already used on line {seen[record.id]}"))
            seen.setdefault(record.id, number)
            found = record_problems(record, scorer, check_images)
            problems.extend(Problem(number, message, level) for level, message in found)
            anomalous += _is_anomalous(record, scorer)
    return count, fold_missing_masks(problems, anomalous)


def fold_missing_masks(problems: list[Problem], anomalous: int) -> list[Problem]:
    """One note for a dataset without masks instead of a warning on each of its anomalous records."""
    unlocated = [p for p in problems if p.message == NO_LOCATION]
    if not unlocated or len(unlocated) < anomalous:
        return problems
    note = Problem(0, f"{NO_MASKS} ({anomalous} anomalous records)", WARNING)
    return [note, *(p for p in problems if p.message != NO_LOCATION)]


def _is_anomalous(record: Record, scorer: Scorer) -> bool:
    try:
        return scorer.parse_label(record.label).anomalous
    except ValueError:
        return False

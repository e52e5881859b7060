"""`iadr1-data validate FILE`: every problem of a records file, with its line number."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rewards import Scorer
from rewards.patterns import ANOMALOUS_SEQUENCE, NORMAL_SEQUENCE, normalise_answer, parse_completion

from .records import Record


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def record_problems(record: Record, scorer: Scorer, check_images: bool = True) -> list[str]:
    """What is wrong with one parsed record (images, label, response)."""
    problems = []
    if check_images:
        for image in record.images:
            if not Path(image).is_file():
                problems.append(f"image not found: {image}")
    try:
        label = scorer.parse_label(record.label)
    except ValueError as error:
        problems.append(str(error))
        return problems
    if label.anomalous and not label.cells:
        problems.append("anomalous label without a location (no cells, or text naming no direction)")
    if record.response is not None:
        parsed = parse_completion(record.response.strip())
        sequence = ANOMALOUS_SEQUENCE if label.anomalous else NORMAL_SEQUENCE
        if not parsed.matches(sequence):
            kind = "anomalous" if label.anomalous else "normal"
            problems.append(f"response does not follow the {kind} tag pattern of its label")
        answer = normalise_answer(parsed.single_content("answer"))
        if answer != label.answer:
            problems.append(f"response answers {answer!r} but the label says {label.answer!r}")
    return problems


def validate_file(path: str | Path, check_images: bool = True) -> tuple[int, list[Problem]]:
    """(records read, problems) for a JSONL records file; never stops at the first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    base = path.resolve().parent
    scorer = Scorer()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    count = 0
    with path.open(encoding="utf-8") as handle:
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
            problems.extend(Problem(number, message) for message in record_problems(record, scorer, check_images))
    return count, problems

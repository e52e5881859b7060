"""The one record format every part of the toolkit reads.

A JSONL line per sample, image paths relative to the file::

    {"id": "…", "images": ["query.png"] | ["reference.png", "query.png"],
     "question": "Are there any defects in the test image?",
     "label": {"answer": "yes", "location": "top left", "cells": [1], "type": "scratch",
               "category": "bottle", "dataset": "MVTec"},
     "response": "<think>…</think>…<answer>yes</answer>"}    # optional: the PA-SFT target

The query image is always last; a 1-shot record puts its normal reference first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.files import atomic_open, folder_of, fsync_path, open_input

__all__ = ["atomic_open", "fsync_path"]  # re-exported: every writer of the toolkit uses them

DEFAULT_QUESTION = "Are there any defects in the test image?"
MAKE_RECORDS = "make some with `iadr1-data synth --n 1000 DIR` or `iadr1-data convert`, see docs/data.md"


@dataclass
class Record:
    """One sample: its images (absolute paths once loaded), question, label, response."""

    id: str
    images: list[str]
    label: dict[str, Any]
    question: str = DEFAULT_QUESTION
    response: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def query_image(self) -> str:
        return self.images[-1]

    @property
    def reference_image(self) -> str | None:
        return self.images[0] if len(self.images) > 1 else None

    @property
    def answer(self) -> str:
        return self.label["answer"]

    @property
    def dataset(self) -> str:
        return self.label.get("dataset") or "unknown"

    def to_json(self, base: Path | None = None) -> dict[str, Any]:
        """The JSONL form; image paths relative to `base` (the file's folder) when given."""
        images = [relative_path(p, base) for p in self.images] if base is not None else list(self.images)
        row: dict[str, Any] = {"id": self.id, "images": images, "question": self.question, "label": self.label}
        if self.response is not None:
            row["response"] = self.response
        row.update(self.extra)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any], base: Path | None = None) -> Record:
        """Build from a JSONL row; raise ValueError naming the first missing or bad field."""
        if not isinstance(row, dict):
            raise ValueError("expected a JSON object")
        for key in ("id", "images", "label"):
            if key not in row:
                raise ValueError(f"missing {key!r}")
        images = row["images"]
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise ValueError("'images' must be a non-empty list of paths")
        if len(images) > 2:
            raise ValueError(f"'images' holds {len(images)} paths; expected [query] or [reference, query]")
        label = row["label"]
        if not isinstance(label, dict):
            raise ValueError("'label' must be an object")
        answer = label.get("answer")
        if answer not in ("yes", "no"):
            raise ValueError(f"label.answer must be 'yes' or 'no', got {answer!r}")
        response = row.get("response")
        if response is not None and not isinstance(response, str):
            raise ValueError("'response' must be text")
        question = row.get("question", DEFAULT_QUESTION)
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' must be non-empty text")
        known = {"id", "images", "label", "question", "response"}
        return cls(
            id=str(row["id"]),
            images=[resolve_path(base, p) for p in images],
            label=label,
            question=question,
            response=response,
            extra={k: v for k, v in row.items() if k not in known},
        )


def resolve_path(base: Path | None, path: str) -> str:
    """`path` against `base` (unless absolute), normalised: `a/../b` becomes `b`."""
    if base is None or os.path.isabs(path):
        return os.path.normpath(path)
    return os.path.normpath(base / path)


def relative_path(path: str, base: Path) -> str:
    """`path` relative to `base` (as written into files), or as is when impossible."""
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return path


class RecordError(ValueError):
    """A problem on one line of a records file."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


def iter_records(path: str | Path, progress: bool = False, skip_bad: bool = False) -> Iterator[Record]:
    """Stream records from a JSONL file (`-`: stdin), image paths resolved against its
    folder (stdin: the current folder).

    A bad line raises RecordError (file and line number) unless `skip_bad`.
    """
    base = folder_of(path)
    path = Path(path)
    with open_input(path, what="records file", hint=MAKE_RECORDS) as handle:
        lines: Iterable[str] = handle
        if progress:
            from tqdm import tqdm

            lines = tqdm(handle, desc=f"reading {path.name}", unit=" records", mininterval=0.5)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Record.from_json(json.loads(line), base)
            except (json.JSONDecodeError, ValueError) as error:
                if skip_bad:
                    continue
                message = f"invalid JSON ({error.msg})" if isinstance(error, json.JSONDecodeError) else str(error)
                raise RecordError(path, number, message) from error


def load_records(path: str | Path, progress: bool = False) -> list[Record]:
    return list(iter_records(path, progress=progress))


def shape_for_shots(records: list[Record], shots: int, source: str | Path) -> list[Record]:
    """The one rule for every consumer (training, export, evaluation): 0-shot uses the
    query image (the last) only; 1-shot needs its normal reference first."""
    if shots == 1:
        lacking = [r.id for r in records if len(r.images) < 2]
        if lacking:
            count = len(lacking)
            raise ValueError(f"{source}: 1-shot needs a reference image; {count} records have none (e.g. {lacking[0]})")
    else:
        for record in records:
            record.images = record.images[-1:]
    return records


def write_records(records: Iterable[Record], path: str | Path) -> int:
    """Write records atomically (temporary file, then rename); paths relative to the file."""
    base = folder_of(path)
    return write_jsonl((r.to_json(base) for r in records), path)


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write JSON rows atomically; returns how many."""
    count = 0
    with atomic_open(path) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(data: Any, path: str | Path) -> None:
    """Write one JSON document atomically."""
    with atomic_open(path) as out:
        json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")

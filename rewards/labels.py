"""Labels: the ground truth a completion is scored against.

Accepted as a dict `{"answer", "location"?, "cells"?, "type"?}`, as its JSON text, or as
the paper's solution string `<think>…</think><location>…</location><type>…</type>
<answer>yes</answer>`. A label without a valid answer is a caller error (ValueError).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .location import Grid, check_grid, location_cells
from .patterns import normalise_answer, parse_completion


@dataclass(frozen=True)
class Label:
    """A parsed label: answer `yes`/`no`, the defect's cells and type text."""

    answer: str
    cells: frozenset[int]
    type: str
    location: str = ""

    @property
    def anomalous(self) -> bool:
        return self.answer == "yes"


LabelInput = Label | Mapping[str, Any] | str


def parse_label(label: LabelInput, grid: Iterable[int] = (3, 3)) -> Label:
    """Parse a label for a grid; raise ValueError naming what is wrong.

    >>> parse_label({"answer": "Yes", "location": "top left", "type": "scratch"}).cells
    frozenset({1})
    >>> parse_label("<think>t</think><answer>no</answer>").answer
    'no'
    """
    grid = check_grid(grid)
    if isinstance(label, Label):
        return label
    if isinstance(label, str):
        stripped = label.strip()
        if stripped.startswith("{"):
            try:
                label = json.loads(stripped)
            except json.JSONDecodeError as error:
                raise ValueError(f"label: invalid JSON ({error.msg} at position {error.pos})") from error
        else:
            return _parse_solution(stripped, grid)
    if not isinstance(label, Mapping):
        raise ValueError(f"label: expected a dict, a JSON object or a solution string, got {type(label).__name__}")
    return _parse_mapping(label, grid)


def _parse_solution(text: str, grid: Grid) -> Label:
    parsed = parse_completion(text)
    answer_content = parsed.single_content("answer")
    if answer_content is None:
        raise ValueError("label: the solution string needs exactly one <answer>…</answer>")
    answer = normalise_answer(answer_content)
    if answer is None:
        raise ValueError(f"label: answer must be 'yes' or 'no', got {answer_content.strip()!r}")
    location = (parsed.single_content("location") or "").strip()
    kind = (parsed.single_content("type") or "").strip()
    return Label(answer, location_cells(location, grid), kind, location)


def _parse_mapping(label: Mapping[str, Any], grid: Grid) -> Label:
    if "answer" not in label:
        raise ValueError("label: missing 'answer' (expected 'yes' or 'no')")
    raw_answer = label["answer"]
    answer = normalise_answer(raw_answer) if isinstance(raw_answer, str) else None
    if answer is None:
        raise ValueError(f"label: answer must be 'yes' or 'no', got {raw_answer!r}")
    kind = label.get("type") or ""
    if not isinstance(kind, str):
        raise ValueError(f"label: type must be text, got {type(kind).__name__}")
    location = label.get("location")
    cells_value = label.get("cells")
    if cells_value is None and isinstance(location, (list, tuple)):
        cells_value, location = location, None  # location given as a list of cells
    if location is not None and not isinstance(location, str):
        raise ValueError(f"label: location must be text or a list of cells, got {type(location).__name__}")
    cells = _check_cells(cells_value, grid) if cells_value is not None else location_cells(location, grid)
    return Label(answer, cells, kind.strip(), (location or "").strip())


def _check_cells(value: Any, grid: Grid) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"label: cells must be a list of integers, got {value!r}")
    rows, columns = grid
    cells = set()
    for cell in value:
        if isinstance(cell, bool) or not isinstance(cell, int):
            raise ValueError(f"label: cells must be integers, got {cell!r}")
        if not 1 <= cell <= rows * columns:
            raise ValueError(f"label: cell {cell} is outside a {rows}x{columns} grid (1..{rows * columns})")
        cells.add(cell)
    return frozenset(cells)

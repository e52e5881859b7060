"""Labels: the ground truth a completion is scored against.

Accepted as a dict `{"answer", "location"?, "cells"?, "type"?}`, as its JSON text, or as
the paper's solution string `<think>…</think><location>…</location><type>…</type>
<answer>yes</answer>`. A label without a valid answer, or malformed in any other way
(however deep, large or oddly typed), is a caller error: `ValueError` naming it.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Hashable, Iterable, Mapping
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
    label = decode_json_label(label)
    if isinstance(label, str):
        return _parse_solution(label.strip(), grid)
    return _parse_mapping(label, grid)


def decode_json_label(label: Any) -> Mapping[str, Any] | str:
    """A label's mapping (decoded when given as JSON text), or its solution string.

    >>> decode_json_label('{"answer": "no"}'), decode_json_label("<answer>no</answer>")
    ({'answer': 'no'}, '<answer>no</answer>')
    """
    if isinstance(label, str):
        stripped = label.strip()
        if not stripped.startswith("{"):
            return label
        try:
            label = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"label: invalid JSON ({error.msg} at position {error.pos})") from error
        except RecursionError as error:
            raise ValueError("label: JSON nested too deeply") from error
        except ValueError as error:  # e.g. an integer beyond Python's digit limit
            raise ValueError(f"label: invalid JSON ({error})") from error
    if not isinstance(label, Mapping):
        raise ValueError(f"label: expected a dict, a JSON object or a solution string, got {type(label).__name__}")
    return label


def _parse_solution(text: str, grid: Grid) -> Label:
    parsed = parse_completion(text)
    answer_content = parsed.single_content("answer")
    if answer_content is None:
        raise ValueError("label: the solution string needs exactly one <answer>…</answer>")
    answer = normalise_answer(answer_content)
    if answer is None:
        raise ValueError(f"label: answer must be 'yes' or 'no', got {_shorten(answer_content.strip())!r}")
    location = (parsed.single_content("location") or "").strip()
    kind = (parsed.single_content("type") or "").strip()
    return Label(answer, location_cells(location, grid), kind, location)


def label_answer(label: Mapping[str, Any]) -> str:
    """The `yes`/`no` of a label mapping, or ValueError."""
    if "answer" not in label:
        raise ValueError("label: missing 'answer' (expected 'yes' or 'no')")
    raw = label["answer"]
    answer = normalise_answer(raw) if isinstance(raw, str) else None
    if answer is None:
        shown = repr(_shorten(raw)) if isinstance(raw, str) else f"a {type(raw).__name__}"
        raise ValueError(f"label: answer must be 'yes' or 'no', got {shown}")
    return answer


def label_text(label: Mapping[str, Any], key: str) -> str:
    """A text field of a label mapping ('' when absent or null), or ValueError."""
    value = label.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"label: {key} must be text, got {type(value).__name__}")
    return value.strip()


def _parse_mapping(label: Mapping[str, Any], grid: Grid) -> Label:
    answer = label_answer(label)
    kind = label_text(label, "type")
    location = label.get("location")
    cells_value = label.get("cells")
    if cells_value is None and isinstance(location, (list, tuple)):
        cells_value, location = location, None  # location given as a list of cells
    if location is not None and not isinstance(location, str):
        raise ValueError(f"label: location must be text or a list of cells, got {type(location).__name__}")
    location = (location or "").strip()
    cells = check_cells(cells_value, grid) if cells_value is not None else location_cells(location, grid)
    return Label(answer, cells, kind, location)


def check_cells(value: Any, grid: Grid) -> frozenset[int]:
    """Cells as a set of integers on the grid (any iterable of integers: a list, a numpy array)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"label: cells must be a list of integers, got {type(value).__name__}")
    rows, columns = grid
    cells = set()
    for cell in value:
        if isinstance(cell, bool) or not isinstance(cell, numbers.Integral):
            raise ValueError(f"label: cells must be integers, got a {type(cell).__name__}")
        cell = int(cell)
        if not 1 <= cell <= rows * columns:
            raise ValueError(f"label: cell {cell} is outside a {rows}x{columns} grid (1..{rows * columns})")
        cells.add(cell)
    return frozenset(cells)


def _shorten(value: Any, limit: int = 80) -> Any:
    """A value fit for an error message: a huge text is cut, not echoed whole."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… ({len(value)} characters)"
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def label_key(label: Any) -> Hashable | None:
    """A key equal for labels of equal content, whatever object carries them; None when
    the label is not worth caching (another type, or values other than text, numbers and
    flat lists of them).

    Types are part of the key: `1`, `1.0` and `True` are equal in Python but not as cells.

    >>> label_key({"answer": "yes", "cells": [1]}) == label_key({"answer": "yes", "cells": [1]})
    True
    >>> label_key({"answer": "yes", "cells": [1]}) == label_key({"answer": "yes", "cells": [True]})
    False
    """
    if isinstance(label, str):
        return label
    if not isinstance(label, Mapping):
        return None
    parts: list[Any] = []
    for key, value in label.items():
        kind = type(value)
        if kind is list or kind is tuple:
            value = (kind, *[(type(item), item) for item in value])
        elif kind not in _SCALARS:
            return None
        parts.append((key, kind, value))
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:  # a nested list among the cells: not cached, parsed (and refused) each time
        return None
    return key

"""Text-to-grid location mapping T(text) (docs/reward.md "Location").

A description such as "upper-left corner" or "top left and bottom right" becomes a set
of cells of an R x C grid, numbered 1 … R·C row-major from the top-left.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import regex

Grid = tuple[int, int]

TOP_WORDS = frozenset({"top", "upper", "up", "above", "topmost", "uppermost"})
BOTTOM_WORDS = frozenset({"bottom", "lower", "down", "below", "beneath", "bottommost", "lowermost"})
LEFT_WORDS = frozenset({"left", "leftmost"})
RIGHT_WORDS = frozenset({"right", "rightmost"})
MIDDLE_WORDS = frozenset({"middle", "center", "centre", "central", "mid"})
DIRECTION_WORDS = TOP_WORDS | BOTTOM_WORDS | LEFT_WORDS | RIGHT_WORDS | MIDDLE_WORDS

CLAUSE_WORDS = frozenset({"and", "or"})

CLAUSE_SEPARATORS = frozenset({",", ";", "/", "&"}) | CLAUSE_WORDS
_WANTED = DIRECTION_WORDS | CLAUSE_SEPARATORS  # all that T(text) depends on

# Words are runs of letters (`bright` holds no `right`): any other character only
# separates them, except the separators `,;/&`, which are tokens of their own.
_LETTER_RUNS = regex.compile(r"\p{L}+|[,;/&]")
_ASCII_TOKENS = str.maketrans(
    {**{i: " " for i in range(128) if not chr(i).isalpha()}, **{ord(c): f" {c} " for c in ",;/&"}}
)
# `as well as` separates clauses too: its words with neither letters nor separators between.
_AS_WELL_AS = regex.compile(r"as(?<!\p{L}as)[^\p{L},;/&]+well[^\p{L},;/&]+as(?!\p{L})")


def check_grid(grid: Iterable[int]) -> Grid:
    """Validate a grid as (rows, columns) of positive integers."""
    try:
        rows, columns = (int(v) for v in grid)
    except (TypeError, ValueError) as error:
        raise ValueError(f"grid must be (rows, columns), got {grid!r}") from error
    if rows < 1 or columns < 1:
        raise ValueError(f"grid must have at least one row and column, got {rows}x{columns}")
    return rows, columns


def _axis(size: int, first: bool, last: bool) -> range:
    """Indices on one axis: first/last extreme, both = span, neither = the middle."""
    if first and last:
        return range(size)
    if first:
        return range(1)
    if last:
        return range(size - 1, size)
    if size % 2:
        return range(size // 2, size // 2 + 1)
    return range(size // 2 - 1, size // 2 + 1)


@lru_cache(maxsize=4096)
def _clause_cells(present: frozenset[str], rows: int, columns: int) -> frozenset[int]:
    """The cells of one clause from the direction words it names (at least one)."""
    row_range = _axis(rows, bool(present & TOP_WORDS), bool(present & BOTTOM_WORDS))
    column_range = _axis(columns, bool(present & LEFT_WORDS), bool(present & RIGHT_WORDS))
    return frozenset(r * columns + c + 1 for r in row_range for c in column_range)


def _tokens(lowered: str) -> list[str]:
    """The direction words and clause separators of a lowercased text, in order (linear:
    a C-speed split, then a set filter)."""
    if "well" in lowered:
        lowered = _AS_WELL_AS.sub(",", lowered)
    # ASCII (nearly every location text) is split by a translation table; other text by regex.
    words = lowered.translate(_ASCII_TOKENS).split() if lowered.isascii() else _LETTER_RUNS.findall(lowered)
    return [word for word in words if word in _WANTED]


def _cells(text: str, rows: int, columns: int) -> frozenset[int]:
    """T(text): the union over clauses of each clause's cells."""
    cells: set[int] = set()
    present: set[str] = set()
    for token in _tokens(text.lower()):
        if token in DIRECTION_WORDS:
            present.add(token)
        elif present:  # a clause ends: it named a direction
            cells |= _clause_cells(frozenset(present), rows, columns)
            present = set()
    if present:
        cells |= _clause_cells(frozenset(present), rows, columns)
    return frozenset(cells)


_cached_cells = lru_cache(maxsize=16384)(_cells)


def location_cells(text: str | None, grid: Iterable[int] = (3, 3)) -> frozenset[int]:
    """Map a location description to grid cells (empty when it names no direction).

    >>> sorted(location_cells("upper-left corner")), sorted(location_cells("top left and bottom right"))
    ([1], [1, 9])
    >>> sorted(location_cells("across the top from left to right")), sorted(location_cells("bright spot"))
    ([1, 2, 3], [])
    >>> sorted(location_cells("center", grid=(4, 4)))
    [6, 7, 10, 11]
    """
    rows, columns = check_grid(grid)
    return cells_on_grid(text, rows, columns)


def cells_on_grid(text: str | None, rows: int, columns: int) -> frozenset[int]:
    """`location_cells` for a grid already checked (the scorer's hot path)."""
    if not text:
        return frozenset()
    # Long texts stay out of the cache (memory); the computation is linear either way.
    return _cached_cells(text, rows, columns) if len(text) <= 4096 else _cells(text, rows, columns)


def cells_to_text(cells: Iterable[int], grid: Iterable[int] = (3, 3)) -> str:
    """Describe cells in words that `location_cells` maps back to the same cells.

    Every cell has such words on grids of 1, 2 or 3 rows and columns; on larger grids
    inner cells have none and raise ValueError (records then carry explicit cells).

    >>> cells_to_text([1, 9]), cells_to_text([5]), cells_to_text([2])
    ('top left and bottom right', 'center', 'top')
    """
    rows, columns = check_grid(grid)
    parts = []
    for cell in sorted(set(cells)):
        if not 1 <= cell <= rows * columns:
            raise ValueError(f"cell {cell} is outside a {rows}x{columns} grid")
        row, column = divmod(cell - 1, columns)
        vertical = _position_word(row, rows, "top", "bottom")
        horizontal = _position_word(column, columns, "left", "right")
        if vertical is None or horizontal is None:
            raise ValueError(f"cell {cell} of a {rows}x{columns} grid has no one-word description")
        words = [w for w in (vertical, horizontal) if w]
        parts.append(" ".join(words) or "center")
    return " and ".join(parts)


def _position_word(index: int, size: int, first: str, last: str) -> str | None:
    """'' for the middle of an axis, the extreme word, or None when no word names it."""
    if size == 1:
        return ""
    if index == 0:
        return first
    if index == size - 1:
        return last
    middle = _axis(size, False, False)
    if len(middle) == 1 and index in middle:
        return ""
    return None

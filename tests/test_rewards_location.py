"""docs/reward.md "Location": T(text) on 3x3 and other grids, every spec example included."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.location import cells_to_text, check_grid, location_cells

SPEC_EXAMPLES = [
    ("upper-left corner", {1}),
    ("top edge", {2}),
    ("middle of the image", {5}),
    ("right-hand side", {6}),
    ("lower left", {7}),
    ("bottom center", {8}),
    ("top left and bottom right", {1, 9}),
    ("across the top from left to right", {1, 2, 3}),
    ("bright spot", set()),
]

MORE_CASES = [
    ("center-left", {4}),  # an extreme beats a middle word on its axis
    ("below center", {8}),
    ("Top-Right", {3}),  # lowercased, split at the hyphen
    ("top left or bottom right", {1, 9}),  # `or` splits clauses
    ("top left, bottom right", {1, 9}),  # so does a comma
    ("top left; center", {1, 5}),
    ("top left / bottom left", {1, 7}),
    ("top left & top right", {1, 3}),
    ("top left as well as bottom right", {1, 9}),
    ("top left as well", {1}),  # `as well` alone is no separator
    ("from top to bottom on the left", {1, 4, 7}),  # vertical span
    ("top bottom left right", {1, 2, 3, 4, 5, 6, 7, 8, 9}),  # both spans
    ("upright", set()),  # whole words only
    ("copyright stopper", set()),
    ("brightness", set()),
    ("leftover", set()),
    ("uppermost region", {2}),
    ("the defect is near the centre", {5}),
    ("mid", {5}),
    ("central area", {5}),
    ("beneath the label", {8}),
    ("above", {2}),
    ("down", {8}),
    ("corner", set()),  # no direction word at all
    ("", set()),
    ("a scratch and a hole", set()),  # clauses without direction words add nothing
    ("left side and nothing else", {4}),
    ("top\u200bleft", {1}),  # a zero-width space separates words
    ("TOP 🙂 LEFT", {1}),
    ("gauche", set()),  # other languages are not mapped
]


@pytest.mark.parametrize(("text", "cells"), SPEC_EXAMPLES + MORE_CASES)
def test_location_cells_3x3(text, cells):
    assert location_cells(text) == frozenset(cells)


@pytest.mark.parametrize(
    ("text", "grid", "cells"),
    [
        ("top", (4, 4), {2, 3}),  # spec: on 4x4 top is {2, 3}
        ("center", (4, 4), {6, 7, 10, 11}),  # and center is {6, 7, 10, 11}
        ("top left", (4, 4), {1}),
        ("bottom right", (2, 5), {10}),
        ("left", (2, 5), {1, 6}),  # 2 rows: the middle is both rows
        ("center", (1, 1), {1}),
        ("top", (1, 3), {2}),
        ("from left to right", (3, 4), {5, 6, 7, 8}),
    ],
)
def test_location_cells_other_grids(text, grid, cells):
    assert location_cells(text, grid) == frozenset(cells)


@pytest.mark.parametrize("grid", [(0, 3), (3, -1), ("a", 3), (3,), None])
def test_bad_grid_is_named(grid):
    with pytest.raises(ValueError, match="grid"):
        check_grid(grid)


@pytest.mark.parametrize("grid", [(3, 3), (2, 2), (1, 3), (3, 1), (2, 3)])
def test_cells_to_text_round_trips(grid):
    rows, columns = grid
    for cell in range(1, rows * columns + 1):
        assert location_cells(cells_to_text([cell], grid), grid) == {cell}
    everything = set(range(1, rows * columns + 1))
    assert location_cells(cells_to_text(everything, grid), grid) == everything


def test_cells_to_text_refuses_what_it_cannot_say():
    with pytest.raises(ValueError, match="outside"):
        cells_to_text([10])
    with pytest.raises(ValueError, match="no one-word description"):
        cells_to_text([6], (4, 4))


LOCATION_PIECES = [
    "top",
    "upper",
    "up",
    "bottom",
    "below",
    "left",
    "right",
    "leftmost",
    "center",
    "mid",
    "and",
    "or",
    "as",
    "well",
    "bright",
    "stop",
    "Top",
    "LEFT",
    "ü",
    "ß",
    "1",
    "_",
    "-",
    " ",
    ",",
    ";",
    "/",
    "&",
    "\n",
    "as well as",
    "as-well-as",
    "as, well as",
    "was well as",
]


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(LOCATION_PIECES), max_size=25),
    rows=st.integers(1, 5),
    columns=st.integers(1, 5),
)
def test_same_cells_as_reading_word_by_word(pieces, rows, columns):
    """The one-scan tokenizer against the straightforward token-by-token reading."""
    from benchmarks.baselines import naive_cells

    text = "".join(pieces)
    assert location_cells(text, (rows, columns)) == naive_cells(text, rows, columns)

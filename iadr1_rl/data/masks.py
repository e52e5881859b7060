"""Defect masks to grid cells, the one rule used by the synthetic data and converters.

Rule: a cell belongs to the defect when it holds at least `min_share` (default 20 %) of
the mask's area; the cell holding the largest share always does. So a small defect is
one cell, and a long scratch crossing two cells is both, but a few stray pixels over a
border add nothing. Cells are numbered as in the reward spec (row-major from 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewards import cells_to_text

DEFAULT_MIN_SHARE = 0.2


def mask_cells(mask: np.ndarray, grid: tuple[int, int] = (3, 3), min_share: float = DEFAULT_MIN_SHARE) -> list[int]:
    """Sorted cells of a 2-D mask (non-zero = defect); [] for an empty mask.

    >>> m = np.zeros((90, 90), bool); m[5:20, 5:20] = True
    >>> mask_cells(m)
    [1]
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (or H x W x C), got shape {mask.shape}")
    mask = mask > 0
    total = int(mask.sum())
    if total == 0:
        return []
    rows, columns = grid
    height, width = mask.shape
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    column_edges = np.linspace(0, width, columns + 1).round().astype(int)
    shares = (
        np.array(
            [
                [
                    mask[row_edges[r] : row_edges[r + 1], column_edges[c] : column_edges[c + 1]].sum()
                    for c in range(columns)
                ]
                for r in range(rows)
            ],
            dtype=float,
        )
        / total
    )
    chosen = shares >= min_share
    chosen.flat[int(shares.argmax())] = True
    return [int(i) + 1 for i in np.flatnonzero(chosen)]


def mask_file_cells(
    path: str | Path, grid: tuple[int, int] = (3, 3), min_share: float = DEFAULT_MIN_SHARE
) -> list[int]:
    """Cells of a mask image file (MVTec `ground_truth/<defect>/<name>_mask.png`)."""
    from PIL import Image

    with Image.open(path) as image:
        return mask_cells(np.asarray(image.convert("L")), grid, min_share)


def location_text(cells: list[int], grid: tuple[int, int] = (3, 3)) -> str:
    """Text that maps back to exactly these cells ("top left and center")."""
    return cells_to_text(cells, grid) if cells else ""

"""An item's image with the scorer's R×C grid drawn over it, the label's cells outlined
and the predicted cells hatched, as a data URI for a self-contained page.

Drawn with PIL from the cells the scorer computed, so what the page shows is what the
reward saw: cell n (1-based, row-major) is row (n-1) // C, column (n-1) % C.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

THUMBNAIL = 192  # pixels on the longer side: readable grid, ~10 KB per item as JPEG
LABEL_COLOUR = (0, 200, 83)  # green outline: where the label says the defect is
PREDICTED_COLOUR = (255, 0, 170)  # magenta hatching: where the model says it is
GRID_COLOUR = (255, 255, 255)


def cell_box(cell: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a 1-based, row-major cell on an image of `size`.

    >>> cell_box(1, (3, 3), (90, 90)), cell_box(6, (3, 3), (90, 90))
    ((0, 0, 30, 30), (60, 30, 90, 60))
    """
    rows, columns = grid
    width, height = size
    row, column = divmod(cell - 1, columns)
    return (
        round(column * width / columns),
        round(row * height / rows),
        round((column + 1) * width / columns),
        round((row + 1) * height / rows),
    )


def load_thumbnail(path: str | Path | None, side: int = THUMBNAIL) -> tuple[Image.Image, str]:
    """The image scaled to `side` on its longer edge (pixels kept sharp when enlarged), and
    a note; a grey square with a note when the image cannot be read."""
    try:
        image = Image.open(path).convert("RGB") if path else None
    except FileNotFoundError:
        image, note = None, f"image not found: {path}"
    except (OSError, UnidentifiedImageError) as error:
        image, note = None, f"image not readable: {error.__class__.__name__}"
    else:
        note = "" if image is not None else "image not in the records"
    if image is None:
        return Image.new("RGB", (side, side), (128, 128, 128)), note
    scale = side / max(image.size)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resample), note


def _hatch(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    left, top, right, bottom = box
    step = 7
    for offset in range(-(bottom - top), right - left, step):  # diagonal lines clipped to the box
        x0, y0 = left + offset, top
        x1, y1 = left + offset + (bottom - top), bottom
        if x0 < left:
            y0, x0 = top + (left - x0), left
        if x1 > right:
            y1, x1 = bottom - (x1 - right), right
        draw.line([(x0, y0), (x1, y1)], fill=colour + (170,), width=2)
    draw.rectangle(box, outline=colour + (255,), width=2)


def draw_cells(
    image: Image.Image, grid: tuple[int, int], label_cells: Iterable[int], predicted_cells: Iterable[int]
) -> Image.Image:
    """`image` with the grid, the predicted cells hatched and the label's cells outlined."""
    canvas = image.convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    rows, columns = grid
    width, height = canvas.size
    for row in range(1, rows):
        y = round(row * height / rows)
        draw.line([(0, y), (width, y)], fill=GRID_COLOUR + (150,), width=1)
    for column in range(1, columns):
        x = round(column * width / columns)
        draw.line([(x, 0), (x, height)], fill=GRID_COLOUR + (150,), width=1)
    for cell in sorted(predicted_cells):
        _hatch(draw, cell_box(cell, grid, canvas.size), PREDICTED_COLOUR)
    for cell in sorted(label_cells):
        left, top, right, bottom = cell_box(cell, grid, canvas.size)
        draw.rectangle((left + 3, top + 3, right - 4, bottom - 4), outline=LABEL_COLOUR + (255,), width=3)
    return Image.alpha_composite(canvas, overlay).convert("RGB")


def data_uri(image: Image.Image, quality: int = 85) -> str:
    """A JPEG data URI (small enough for 1,000 items on one page)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grid_picture(
    path: str | Path | None, grid: tuple[int, int], label_cells: Iterable[int], predicted_cells: Iterable[int]
) -> tuple[str, str]:
    """(data URI, note) of the item's image with its cells drawn."""
    thumbnail, note = load_thumbnail(path)
    return data_uri(draw_cells(thumbnail, grid, label_cells, predicted_cells)), note

"""Synthetic industrial defects: the embedded default's data.

`iadr1-data synth --n N --seed S OUT_DIR` renders small RGB images of textured surfaces
(brushed metal, woven fabric, wood, tile) and a simple part (a plate on a dark
background), half of them with one defect in a known place: a scratch (thin bright
line), a hole (dark disc with a bright rim), a stain (soft brown blotch), a crack (jagged
dark line), a missing part (a chip showing the bright material beneath) or a deformation
(a shaded bump). Each kind looks different at 16 visual tokens, so a tiny VLM can tell
them apart. The defect's mask gives its grid cells (`masks.mask_cells`) and text
location; each record carries an Expert-AD-style chain of thought in the reward spec's
tag pattern. Output is deterministic for a seed: `OUT_DIR/records.jsonl`,
`OUT_DIR/images/`, the normal references for 1-shot in `OUT_DIR/references/`, and
`OUT_DIR/masks/`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .masks import location_text, mask_cells
from .prompts import QUESTION
from .records import Record, write_records

logger = logging.getLogger(__name__)

CATEGORIES = ("metal plate", "fabric", "wood", "tile", "plate part")
# Defect kind -> the type term the label uses (terms of the reward's vocabulary).
DEFECT_TYPES = {
    "scratch": "scratch",
    "hole": "hole",
    "stain": "stain",
    "crack": "fracture",
    "missing": "missing part",
    "deformation": "deformation",
}
# How the chain of thought may name each kind: the label's term first, then fine-grained
# synonyms of the same category in the reward's default vocabulary (each scores 0.85
# against the label's term, the term itself 1.0). Expert-AD's chains of thought name
# types in such finer words while the labels keep the coarse term; SC-GRPO's graded type
# reward is what steers a model from the one to the other.
TYPE_WORDINGS = {
    "scratch": ("scratch", "scratch mark", "linear scratch", "surface scratch"),
    "hole": ("hole", "perforation", "puncture", "opening"),
    "stain": ("stain", "dirt", "surface contamination", "impurity"),
    "crack": ("fracture", "breakage", "rupture", "structural damage"),
    "missing": ("missing part", "chip", "notch", "gap"),
    "deformation": ("deformation", "warping", "shape distortion", "bending"),
}
GROUPS = {
    "scratch": "surface",
    "stain": "surface",
    "missing": "surface",
    "hole": "structural",
    "crack": "structural",
    "deformation": "structural",
}


@dataclass(frozen=True)
class SynthConfig:
    """What to render. `strength` scales defect size and contrast (1.0 = the default mix)."""

    n: int = 1000
    seed: int = 0
    size: int = 112
    anomaly_ratio: float = 0.5
    defects: tuple[str, ...] = tuple(DEFECT_TYPES)
    categories: tuple[str, ...] = CATEGORIES
    strength: float = 1.0
    variants_per_category: int = 6  # products per category, each with its own reference
    shots: int = 0
    cot: str = "full"  # "full" three-layer reasoning, or "short" (one sentence)
    # How many of each kind's `TYPE_WORDINGS` the reasoning draws from: 1 names the type by
    # the label's term; more, by finer synonyms as well, as Expert-AD's reasoning does (the
    # label keeps its term).
    type_wordings: int = 1
    grid: tuple[int, int] = (3, 3)
    dataset: str = "synthetic"
    id_prefix: str = "synth"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.size < 28 or self.size % 28:
            raise ValueError(f"size must be a multiple of 28 (the VLM patch grid), got {self.size}")
        unknown = set(self.defects) - set(DEFECT_TYPES)
        if unknown or not self.defects:
            raise ValueError(f"unknown defects {sorted(unknown)}; choose from {', '.join(DEFECT_TYPES)}")
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown or not self.categories:
            raise ValueError(f"unknown categories {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
        if not 0 <= self.anomaly_ratio <= 1:
            raise ValueError("anomaly_ratio must lie in [0, 1]")
        if self.variants_per_category < 1:
            raise ValueError("variants_per_category must be at least 1")
        if self.shots not in (0, 1):
            raise ValueError("shots must be 0 or 1")
        if self.cot not in ("full", "short"):
            raise ValueError("cot must be 'full' or 'short'")
        most = min(len(words) for words in TYPE_WORDINGS.values())
        if not 1 <= self.type_wordings <= most:
            raise ValueError(f"type_wordings must lie in 1..{most}, got {self.type_wordings}")


# ------------------------------------------------------------------------- surfaces
@dataclass(frozen=True)
class Surface:
    """The parameters of one category instance: colour, pattern strength."""

    category: str
    color: tuple[float, float, float]
    pattern: float
    frequency: float


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    coarse = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(image) * amplitude


def render_surface(surface: Surface, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float image, foreground mask): the defect-free sample."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    p, f = surface.pattern, surface.frequency
    if surface.category == "metal plate":
        streaks = np.repeat(rng.normal(0, 1, (size, 1)), size, axis=1)
        shade = streaks * p * 0.6 + _smooth_noise(rng, size, 3, 6)
    elif surface.category == "fabric":
        shade = p * np.sin(x * f) * np.sin(y * f) + _smooth_noise(rng, size, 4, 4)
    elif surface.category == "wood":
        shade = p * np.sin((x + 0.3 * y) * f * 0.5 + _smooth_noise(rng, size, 4, 1.5)) + _smooth_noise(rng, size, 3, 4)
    elif surface.category == "tile":
        shade = _smooth_noise(rng, size, 8, p * 0.8) + _smooth_noise(rng, size, 3, 5)
    else:  # plate part: a rounded plate on a dark background
        shade = _smooth_noise(rng, size, 4, 4)
    gray = shade + rng.normal(0, 2.5, (size, size))
    image = np.stack([gray + c for c in surface.color], axis=-1)
    foreground = np.ones((size, size), bool)
    if surface.category == "plate part":
        margin, radius = size * 0.06, size * 0.12
        # A rounded square: distance outside the inner square must stay under the corner radius.
        box = np.maximum(np.abs(x - size / 2 + 0.5), np.abs(y - size / 2 + 0.5))
        foreground = np.clip(box - (size / 2 - margin - radius), 0, None) <= radius
        image[~foreground] = 28 + rng.normal(0, 2, (int((~foreground).sum()), 3))
    return image, foreground


def random_surface(category: str, rng: random.Random) -> Surface:
    base = rng.uniform(90, 170)
    tint = [rng.uniform(-25, 25) for _ in range(3)]
    return Surface(category, tuple(base + t for t in tint), rng.uniform(6, 12), rng.uniform(0.5, 0.9))


# -------------------------------------------------------------------------- defects
def _line_mask(size: int, points: np.ndarray, width: float) -> np.ndarray:
    """Pixels within width/2 of a polyline."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.full((size, size), np.inf, np.float32)
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        distance = np.minimum(distance, np.hypot(x - x0 - t * dx, y - y0 - t * dy))
    return distance <= width / 2


def _disc(size: int, cx: float, cy: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.hypot(x - cx, y - cy)
    return distance, distance <= radius


Defect = Callable[[np.ndarray, np.random.Generator, random.Random, float, float, float], np.ndarray]


def scratch(image, nrng, rng, cx, cy, s) -> np.ndarray:
    length, angle = rng.uniform(14, 26) * s, rng.uniform(0, np.pi)
    half = np.array([np.cos(angle), np.sin(angle)]) * length / 2
    mask = _line_mask(image.shape[0], np.array([[cx, cy] - half, [cx, cy] + half]), rng.uniform(1.6, 2.6) * s)
    # Always bright: the coating scraped down to bare metal. A dark scratch looks like a
    # crack to a 16-token vision tower (measured: half of them were called fractures).
    image[mask] += rng.uniform(45, 70) * s
    return mask


def hole(image, nrng, rng, cx, cy, s) -> np.ndarray:
    radius = rng.uniform(4.5, 8.0) * s
    distance, mask = _disc(image.shape[0], cx, cy, radius)
    rim = (distance > radius) & (distance <= radius + 1.5)
    image[rim] += 25
    image[mask] = 20 + nrng.normal(0, 3, (int(mask.sum()), 3))
    return mask


def stain(image, nrng, rng, cx, cy, s) -> np.ndarray:
    size = image.shape[0]
    sigma = rng.uniform(5, 8) * s
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    blob = np.exp(-((x - cx) ** 2 / (2 * sigma**2) + (y - cy) ** 2 / (2 * (sigma * rng.uniform(0.6, 1.4)) ** 2)))
    blob *= 1 + 0.3 * _smooth_noise(nrng, size, 6, 1)
    tint = np.array([-0.6, -0.9, -1.3]) * rng.uniform(55, 80) * s
    image += blob[..., None] * tint
    return blob > 0.3


def crack(image, nrng, rng, cx, cy, s) -> np.ndarray:
    steps, length = 7, rng.uniform(18, 28) * s
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    offsets = np.linspace(-length / 2, length / 2, steps)
    jitter = np.array([rng.uniform(-3, 3) * s for _ in range(steps)])
    points = np.array([cx, cy]) + offsets[:, None] * direction + jitter[:, None] * normal
    mask = _line_mask(image.shape[0], points, rng.uniform(1.4, 2.2) * s)
    image[mask] = image[mask] * 0.25 + 10
    return mask


def missing(image, nrng, rng, cx, cy, s) -> np.ndarray:
    size = image.shape[0]
    radius = rng.uniform(6, 10) * s
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.arctan2(y - cy, x - cx)
    wobble = 1 + 0.25 * np.sin(angle * rng.randint(3, 5) + rng.uniform(0, 6))
    mask = np.hypot(x - cx, y - cy) <= radius * wobble
    # The chip shows the bright bare material beneath the surface layer, with a dark
    # broken edge: unlike a hole's dark void with a bright rim (measured: dark chips were
    # called holes half the time).
    image[mask] = 225 + nrng.normal(0, 4, (int(mask.sum()), 3))
    edge = (np.hypot(x - cx, y - cy) <= radius * wobble + 1.5) & ~mask
    image[edge] *= 0.4
    return mask


def deformation(image, nrng, rng, cx, cy, s) -> np.ndarray:
    size = image.shape[0]
    radius = rng.uniform(8, 12) * s
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.hypot(x - cx, y - cy)
    bump = np.clip(1 - distance / radius, 0, 1)
    light = ((x - cx) * np.cos(0.8) + (y - cy) * np.sin(0.8)) / radius
    image += (bump * light * rng.uniform(90, 120) * s)[..., None]
    return bump > 0.15


DEFECTS: dict[str, Defect] = {
    "scratch": scratch,
    "hole": hole,
    "stain": stain,
    "crack": crack,
    "missing": missing,
    "deformation": deformation,
}


# ---------------------------------------------------------------- chain of thought
SURFACE_WORDS = {
    "metal plate": ["a brushed metal plate with fine horizontal grain", "a metal plate with a brushed finish"],
    "fabric": ["a woven fabric with a regular weave", "a fabric surface with a repeating weave"],
    "wood": ["a wooden surface with smooth growth rings", "a wood panel with regular grain lines"],
    "tile": ["a ceramic tile with a mottled glaze", "a tile surface with a mottled pattern"],
    "plate part": ["a rectangular plate part on a dark background", "a flat plate component against a dark backdrop"],
}
SEEN = {
    "scratch": ["a thin bright straight line that breaks the texture", "a narrow bright linear mark"],
    "hole": ["a dark round opening with a bright rim", "a small dark circular void"],
    "stain": ["a soft brownish blotch", "a diffuse discoloured patch"],
    "crack": ["a dark jagged line", "an irregular dark fissure"],
    "missing": ["a chipped region showing the bare material beneath", "a bright bite out of the surface"],
    "deformation": ["a shaded bump that distorts the surface", "a raised, bulging area"],
}
MEANING = {
    "scratch": "is typical of a scratch",
    "hole": "indicates a hole through the material",
    "stain": "points to contamination by a stain",
    "crack": "is the signature of a fracture",
    "missing": "means a part of the material is missing",
    "deformation": "shows the shape is deformed",
}
WHERE = ["in the {where} region", "at the {where} of the image", "in the {where} area"]
NORMAL_SEEN = [
    "every region shows the same regular pattern",
    "the texture is uniform across all regions",
    "no region departs from the regular appearance",
]


def chain_of_thought(
    kind: str | None, category: str, cells: list[int], grid, rng: random.Random, cot: str, type_word: str | None = None
) -> str:
    """The PA-SFT target: reasoning in three layers, then the tags of the spec's pattern.
    `type_word` names the defect (default: the label's term, `DEFECT_TYPES[kind]`)."""
    surface = rng.choice(SURFACE_WORDS[category])
    if kind is None:
        if cot == "short":
            think = f"The {category} looks uniform and no defect is visible."
        else:
            think = (
                f"The image shows {surface}. Scanning region by region, {rng.choice(NORMAL_SEEN)}. "
                f"Nothing matches a known defect, so the {category} is normal."
            )
        return f"<think>{think}</think><answer>no</answer>"
    where = location_text(cells, grid)
    place = rng.choice(WHERE).format(where=where)
    defect_type = type_word or DEFECT_TYPES[kind]
    if cot == "short":
        think = f"There is {rng.choice(SEEN[kind])} {place}, a {defect_type}."
    else:
        think = (
            f"The image shows {surface}. Scanning region by region, I see {rng.choice(SEEN[kind])} {place}. "
            f"This {MEANING[kind]}, a {GROUPS[kind]} anomaly. The {category} is defective."
        )
    return f"<think>{think}</think><location>{where}</location><type>{defect_type}</type><answer>yes</answer>"


# ------------------------------------------------------------------------ rendering
def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def _defect_centre(cell: int, grid, size: int, rng: random.Random) -> tuple[float, float]:
    rows, columns = grid
    row, column = divmod(cell - 1, columns)
    cell_h, cell_w = size / rows, size / columns
    margin_y, margin_x = cell_h * 0.3, cell_w * 0.3
    cy = row * cell_h + rng.uniform(margin_y, cell_h - margin_y)
    cx = column * cell_w + rng.uniform(margin_x, cell_w - margin_x)
    return cx, cy


def synthesize(out_dir: str | Path, config: SynthConfig = SynthConfig(), progress: bool = False) -> Path:
    """Render `config.n` samples into `out_dir`; returns the records file."""
    out_dir = Path(out_dir)
    for sub in ("images", "references", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    nrng = np.random.default_rng(config.seed)
    size, grid = config.size, config.grid

    # A category has several products (colour, pattern); a 1-shot reference is a normal
    # sample of the same product, as MVTec's templates are.
    products = [
        (category, k, random_surface(category, rng))
        for category in config.categories
        for k in range(config.variants_per_category)
    ]
    references = []
    for category, k, surface in products:
        image, _ = render_surface(surface, nrng, size)
        path = out_dir / "references" / f"{config.id_prefix}-{config.seed}-{category.replace(' ', '_')}-{k}.png"
        Image.fromarray(_to_uint8(image)).save(path)
        references.append(str(path))

    n_anomalous = round(config.n * config.anomaly_ratio)
    plan = [True] * n_anomalous + [False] * (config.n - n_anomalous)
    rng.shuffle(plan)
    indices = range(config.n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="rendering", unit=" images", mininterval=0.5)
    # Its own stream, so the wording mode changes the type words and nothing else.
    words_rng = random.Random(f"{config.seed}-type-words")
    records = []
    anomaly_index = 0
    for index in indices:
        product = rng.randrange(len(products))
        category, _, surface = products[product]
        image, foreground = render_surface(surface, nrng, size)
        kind, cells = None, []
        sample_id = f"{config.id_prefix}-{config.seed}-{index:06d}"
        if plan[index]:
            kind = config.defects[anomaly_index % len(config.defects)]
            anomaly_index += 1
            cell = rng.randint(1, grid[0] * grid[1])
            cx, cy = _defect_centre(cell, grid, size, rng)
            strength = config.strength * rng.uniform(0.85, 1.25)
            mask = DEFECTS[kind](image, nrng, rng, cx, cy, strength) & foreground
            cells = mask_cells(mask, grid)
            Image.fromarray((mask * 255).astype(np.uint8)).save(out_dir / "masks" / f"{sample_id}.png")
        image_path = out_dir / "images" / f"{sample_id}.png"
        Image.fromarray(_to_uint8(image)).save(image_path)
        label = {
            "answer": "yes" if kind else "no",
            "location": location_text(cells, grid),
            "cells": cells,
            "type": DEFECT_TYPES[kind] if kind else "",
            "category": category,
            "dataset": config.dataset,
        }
        images = [str(image_path)]
        if config.shots == 1:
            images.insert(0, references[product])
        type_word = None
        if kind and config.type_wordings > 1:
            type_word = words_rng.choice(TYPE_WORDINGS[kind][: config.type_wordings])
        response = chain_of_thought(kind, category, cells, grid, rng, config.cot, type_word)
        records.append(Record(id=sample_id, images=images, label=label, question=QUESTION, response=response))
    path = out_dir / "records.jsonl"
    write_records(records, path)
    logger.info("wrote %d synthetic records (%d anomalous) to %s", len(records), n_anomalous, path)
    return path

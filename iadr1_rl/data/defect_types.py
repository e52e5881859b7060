"""Defect folder names (MVTec AD, VisA, MPDD, …) onto the reward vocabulary's terms.

Editable: `--type-map my_map.yaml` adds to or overrides this table (`{folder: term}`).
A folder that is absent keeps its own name with `_` as spaces (the type matcher then
compares it fuzzily); folders that name no type at all (`combined`, `bad`, …) map to an
empty type, which earns no type reward either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rewards.vocabulary import read_mapping

NO_TYPE = ("good", "bad", "combined", "anomalous", "defective", "defect", "anomaly", "ko", "ng")

DEFECT_TYPES: dict[str, str] = {
    # MVTec AD
    "broken_large": "breakage",
    "broken_small": "breakage",
    "broken": "breakage",
    "broken_teeth": "breakage",
    "split_teeth": "breakage",
    "contamination": "contamination",
    "metal_contamination": "foreign matter",
    "glue": "stain",
    "glue_strip": "stain",
    "oil": "stain",
    "liquid": "stain",
    "color": "color anomaly",
    "gray_stroke": "color anomaly",
    "faulty_imprint": "color anomaly",
    "print": "color anomaly",
    "thread": "foreign object",
    "fabric_border": "foreign object",
    "fabric_interior": "foreign object",
    "missing_cable": "missing part",
    "missing_wire": "missing part",
    "misplaced": "missing part",
    "cable_swap": "irregularity",
    "pill_type": "irregularity",
    "flip": "irregularity",
    "bent": "bending",
    "bent_wire": "bending",
    "bent_lead": "bending",
    "squeeze": "shape distortion",
    "squeezed_teeth": "shape distortion",
    "fold": "shape distortion",
    "manipulated_front": "shape distortion",
    "crack": "fracture",
    "cut": "breakage",
    "cut_inner_insulation": "breakage",
    "cut_outer_insulation": "breakage",
    "cut_lead": "breakage",
    "hole": "hole",
    "poke": "puncture",
    "poke_insulation": "puncture",
    "scratch": "scratch",
    "scratches": "scratch",
    "scratch_head": "scratch",
    "scratch_neck": "scratch",
    "damaged_case": "damage",
    "thread_side": "damage",
    "thread_top": "damage",
    "rough": "surface wear",
    # MPDD
    "major_rust": "deterioration",
    "total_rust": "deterioration",
    "defective_painting": "color anomaly",
    "parts_mismatch": "irregularity",
    "bend_and_parts_mismatch": "bending",
    # VisA (after splitting into the MVTec layout)
    "burnt": "damage",
    "chip": "chip",
    "chipped": "chip",
    "missing": "missing part",
    "extra": "foreign object",
    "spot": "stain",
    "stuck": "irregularity",
    "wrong_place": "irregularity",
    "melt": "deformation",
    "dirt": "dirt",
    "weird_wick": "irregularity",
    "damage": "damage",
    "fryum_stuck": "irregularity",
}


def load_type_map(path: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """The default table updated with a user's mapping (dict or JSON/YAML file)."""
    table = dict(DEFECT_TYPES)
    if path is None:
        return table
    extra = path if isinstance(path, Mapping) else read_mapping(Path(path))
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ValueError(f"type map {path}: expected a mapping of folder name -> type text")
    table.update({k.lower(): v for k, v in extra.items()})
    return table


def defect_type(folder: str, table: Mapping[str, str] | None = None) -> str:
    """The type text for a defect folder name.

    >>> defect_type("broken_large"), defect_type("combined"), defect_type("weird_new_defect")
    ('breakage', '', 'weird new defect')
    """
    name = folder.strip().lower()
    if name in NO_TYPE:
        return ""
    table = DEFECT_TYPES if table is None else table
    return table.get(name, name.replace("_", " ").replace("-", " "))

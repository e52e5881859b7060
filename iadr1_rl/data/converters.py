"""Converters between our records and the formats users bring or need.

In: MVTec-AD folder layout (also MPDD, and VisA split into that layout), the MMAD
question files the authors evaluate with, the authors' SC-GRPO JSON and LLaMA-Factory
sharegpt. Out: the authors' two training formats, OpenRLHF's VLM prompt dataset, verl's
parquet and a Hugging Face `datasets` folder (TRL, EasyR1). Converting never needs the
images to exist (`iadr1-data validate` checks them); the verl and Hugging Face exports
embed them, so they need them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rewards import parse_label
from rewards.files import folder_of, open_input

from .defect_types import defect_type
from .masks import DEFAULT_MIN_SHARE, location_text, mask_file_cells
from .prompts import QUESTION, build_messages, prompt_text
from .records import Record, relative_path, resolve_path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


# ----------------------------------------------------------------------------- MVTec
def _categories(root: Path) -> list[Path]:
    if (root / "test").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "test").is_dir())
    if not found:
        raise ValueError(f"{root}: no <category>/test/ folders (MVTec-AD layout) found")
    return found


def _mask_for(category: Path, defect: str, image: Path) -> Path | None:
    folder = category / "ground_truth" / defect
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png", f"{image.stem}_mask{image.suffix}"):
        if (folder / name).is_file():
            return folder / name
    return None


def from_mvtec(
    root: str | Path,
    dataset: str | None = None,
    shots: int = 0,
    type_map: Mapping[str, str] | None = None,
    grid: tuple[int, int] = (3, 3),
    min_share: float = DEFAULT_MIN_SHARE,
) -> Iterator[Record]:
    """Records from `<category>/test/<defect>/*.png` with `<category>/ground_truth/<defect>/*_mask.png`.

    Location: the cells holding ≥ `min_share` of the mask's area (and the largest one),
    written as `cells` and as text. Type: the defect folder through `type_map`. 1-shot
    references: the first image of `<category>/train/good`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"MVTec root not found: {root}")
    dataset = dataset or root.name
    for category in _categories(root):
        reference = None
        if shots:
            goods = _images_in(category / "train" / "good")
            if not goods:
                raise ValueError(f"{category}: 1-shot needs {category / 'train' / 'good'} with images")
            reference = goods[0]
        for defect_dir in sorted(p for p in (category / "test").iterdir() if p.is_dir()):
            defect = defect_dir.name
            normal = defect == "good"
            for image in _images_in(defect_dir):
                cells: list[int] = []
                if not normal:
                    mask = _mask_for(category, defect, image)
                    if mask is None:
                        logger.warning("no mask for %s: location left empty", image)
                    else:
                        cells = mask_file_cells(mask, grid, min_share)
                label = {
                    "answer": "no" if normal else "yes",
                    "location": location_text(cells, grid),
                    "cells": cells,
                    "type": "" if normal else defect_type(defect, type_map),
                    "category": category.name,
                    "dataset": dataset,
                }
                images = [str(image)] if reference is None else [str(reference), str(image)]
                yield Record(f"{dataset}/{category.name}/{defect}/{image.stem}", images, label, QUESTION)


# ------------------------------------------------------------------------------ MMAD
def _path_parts(image_path: str) -> tuple[str, str, str]:
    """(dataset, category, defect folder) from an MMAD path like `MPDD/bracket_black/test/hole/000.png`."""
    parts = Path(image_path).parts
    dataset = parts[0] if parts else "unknown"
    if "test" in parts:
        i = parts.index("test")
        category = parts[i - 1] if i > 1 else dataset
        defect = parts[i + 1] if i + 2 < len(parts) else ""
        return dataset, category, defect
    return dataset, parts[1] if len(parts) > 2 else dataset, parts[-2] if len(parts) > 1 else ""


def from_mmad(
    path: str | Path,
    image_root: str | Path | None = None,
    shots: int = 0,
    type_map: Mapping[str, str] | None = None,
) -> Iterator[Record]:
    """Records from an MMAD question file (`{image_path: {conversation, similar_templates}}`).

    Answer from the option the `Answer` letter names (`Yes.` = anomalous); dataset,
    category and type from the image path; the 1-shot reference is the first of
    `similar_templates`. Image paths are resolved against `image_root` (default: the
    file's folder).
    """
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read an MMAD JSON file ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by image path")
    root = Path(image_root) if image_root is not None else folder_of(path)
    for key, item in data.items():
        image_path = item.get("image_path", key)
        detection = next(
            (c for c in item.get("conversation", []) if "defect" in c.get("Question", "").lower()),
            None,
        )
        if detection is None:
            raise ValueError(f"{path}: {key}: no anomaly-detection question in its conversation")
        option = detection.get("Options", {}).get(detection.get("Answer", ""), "")
        answer = option.strip().lower().rstrip(".!")
        if answer not in ("yes", "no"):
            raise ValueError(f"{path}: {key}: answer {detection.get('Answer')!r} names {option!r}, not Yes/No")
        dataset, category, defect = _path_parts(image_path)
        images = [str(root / image_path)]
        if shots:
            templates = item.get("similar_templates") or []
            if not templates:
                raise ValueError(f"{path}: {key}: 1-shot asked but the item has no similar_templates")
            images.insert(0, str(root / templates[0]))
        label = {
            "answer": answer,
            "location": "",
            "cells": [],
            "type": defect_type(defect, type_map) if answer == "yes" else "",
            "category": category,
            "dataset": dataset,
        }
        yield Record(image_path, images, label, QUESTION)


# ------------------------------------------------------------------- authors' formats
def _read_text(path: Path) -> str:
    """The whole of a file, or of stdin for `-`."""
    with open_input(path, "input file") as handle:
        return handle.read()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON array or JSONL file of objects."""
    text = _read_text(path).strip()
    if text.startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected objects")
    return rows


def _label_from_solution(solution: str, where: str) -> dict[str, Any]:
    try:
        parsed = parse_label(solution)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return {
        "answer": parsed.answer,
        "location": parsed.location,
        "cells": sorted(parsed.cells),
        "type": parsed.type,
        "category": "",
        "dataset": "",
    }


def from_authors_grpo(path: str | Path) -> Iterator[Record]:
    """Records from the authors' SC-GRPO JSON: `{"image", "problem", "solution"}` rows."""
    path = Path(path)
    base = folder_of(path)
    for index, row in enumerate(_read_rows(path)):
        where = f"{path}: row {index}"
        for key in ("image", "solution"):
            if key not in row:
                raise ValueError(f"{where}: missing {key!r}")
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        question = str(row.get("problem") or QUESTION).replace("<image>", "").strip()
        label = _label_from_solution(row["solution"], where)
        paths = [resolve_path(base, p) for p in images]
        yield Record(str(row.get("id", index)), paths, label, question, row["solution"])


def to_authors_grpo(records: Iterable[Record], base: Path) -> list[dict[str, Any]]:
    """The authors' SC-GRPO JSON rows (solution = the record's response, or one built from its label)."""
    return [
        {
            "image": _relative_images(r, base)[-1] if len(r.images) == 1 else _relative_images(r, base),
            "problem": prompt_text("train", len(r.images) - 1, r.question).replace("{image}", ""),
            "solution": r.response or solution_from_label(r.label),
        }
        for r in records
    ]


def solution_from_label(label: Mapping[str, Any]) -> str:
    """A solution string in the spec's pattern when a record has no response."""
    if label["answer"] == "no":
        return "<think>The sample is normal.</think><answer>no</answer>"
    return (
        f"<think>The sample is defective.</think><location>{label.get('location', '')}</location>"
        f"<type>{label.get('type', '')}</type><answer>yes</answer>"
    )


def from_sharegpt(path: str | Path) -> Iterator[Record]:
    """Records from LLaMA-Factory sharegpt rows: `{"messages": [user, assistant], "images": [...]}`."""
    path = Path(path)
    base = folder_of(path)
    for index, row in enumerate(_read_rows(path)):
        where = f"{path}: row {index}"
        messages = row.get("messages") or row.get("conversations")
        if not isinstance(messages, list) or len(messages) < 2:
            raise ValueError(f"{where}: 'messages' must hold a user and an assistant turn")
        user = next((m for m in messages if m.get("role", m.get("from")) in ("user", "human")), None)
        assistant = next((m for m in messages if m.get("role", m.get("from")) in ("assistant", "gpt")), None)
        if user is None or assistant is None:
            raise ValueError(f"{where}: no user or no assistant turn")
        response = str(assistant.get("content", assistant.get("value", "")))
        question = str(user.get("content", user.get("value", ""))).replace("<image>", "").strip() or QUESTION
        images = row.get("images") or []
        if not images:
            raise ValueError(f"{where}: no images")
        label = _label_from_solution(response, where)
        yield Record(str(row.get("id", index)), [resolve_path(base, p) for p in images], label, question, response)


def to_sharegpt(records: Iterable[Record], base: Path) -> list[dict[str, Any]]:
    """LLaMA-Factory sharegpt rows for PA-SFT (the `<image>` marks where images go)."""
    rows = []
    for r in records:
        text = prompt_text("train", len(r.images) - 1, r.question).replace("{image}", "<image>")
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": r.response or solution_from_label(r.label)},
                ],
                "images": _relative_images(r, base),
            }
        )
    return rows


def _relative_images(record: Record, base: Path) -> list[str]:
    return [relative_path(p, base) for p in record.images]


# ------------------------------------------------------------------------- OpenRLHF
def to_openrlhf(records: Iterable[Record], prompt_family: str = "train") -> list[dict[str, Any]]:
    """OpenRLHF's VLM prompt dataset: chat messages with image items (`--data.input_key prompt
    --data.apply_chat_template`), absolute `images` (`--data.image_key images`), and the
    label as JSON text (`--data.label_key label`) for our reward function or server."""
    rows = []
    for r in records:
        text = prompt_text(prompt_family, len(r.images) - 1, r.question)
        rows.append(
            {
                "prompt": build_messages(text),
                "images": [str(Path(p).resolve()) for p in r.images],
                "label": json.dumps(r.label, ensure_ascii=False),
                "datasource": r.dataset,
                "id": r.id,
            }
        )
    return rows


# -------------------------------------------------------------------- verl, HF datasets
def _image_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def _placeholder_text(record: Record, prompt_family: str) -> str:
    """The prompt as one text with an `<image>` where each image goes (verl, EasyR1)."""
    return prompt_text(prompt_family, len(record.images) - 1, record.question).replace("{image}", "<image>")


def to_verl(records: Iterable[Record], prompt_family: str = "train", split: str = "train") -> list[dict[str, Any]]:
    """verl's RL dataset rows: `data_source`, `prompt` (chat messages, `<image>` where each
    image goes), `images` (the image bytes, embedded), `ability`, `reward_model` (the label
    as JSON text in `ground_truth`, which `rewards/integrations/verl.py` reads) and
    `extra_info` (id, split, index)."""
    return [
        {
            "data_source": r.dataset,
            "prompt": [{"role": "user", "content": _placeholder_text(r, prompt_family)}],
            "images": [{"bytes": _image_bytes(p)} for p in r.images],
            "ability": "industrial_anomaly_detection",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(r.label, ensure_ascii=False)},
            "extra_info": {"id": r.id, "split": split, "index": index},
        }
        for index, r in enumerate(records)
    ]


def to_hf_columns(records: Iterable[Record], prompt_family: str = "train") -> dict[str, list[Any]]:
    """Columns of a Hugging Face dataset: `id`, `prompt` (chat messages with image items, as
    TRL takes them), `problem` (the same as one text with `<image>`, as EasyR1 takes it),
    `images` (embedded, for an `Image` feature: the folder stands alone), `label` (JSON text)
    and `response`."""
    columns: dict[str, list[Any]] = {key: [] for key in ("id", "prompt", "problem", "images", "label", "response")}
    for r in records:
        columns["id"].append(r.id)
        columns["prompt"].append(build_messages(prompt_text(prompt_family, len(r.images) - 1, r.question)))
        columns["problem"].append(_placeholder_text(r, prompt_family))
        columns["images"].append([{"bytes": _image_bytes(p), "path": Path(p).name} for p in r.images])
        columns["label"].append(json.dumps(r.label, ensure_ascii=False))
        columns["response"].append(r.response or "")
    return columns

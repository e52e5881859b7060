"""Load any HF vision-language model folder (the tiny one or a real checkpoint)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def check_model_dir(path: str | Path) -> Path:
    """A model folder that exists and holds a config; a clear error otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (models are never downloaded here)")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not an HF model folder")
    return path


def import_model_code(path: str | Path) -> None:
    """Import the code a folder's model and processor run on, without loading weights (so
    that a process can tell the memory its model takes from the memory its code takes)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from .processor import load_processor

    config = AutoConfig.from_pretrained(str(check_model_dir(path)))
    AutoModelForImageTextToText._model_mapping[type(config)]  # imports the modeling module
    load_processor(path)


def load_vlm(path: str | Path, dtype: str = "float32", device: str = "cpu", max_pixels: int | None = None):
    """(model, processor) from an HF folder, in eval mode, created on `device`."""
    import torch
    from transformers import AutoModelForImageTextToText

    from .processor import load_processor

    path = check_model_dir(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    image_kwargs = {"max_pixels": max_pixels} if max_pixels else {}
    processor = load_processor(path, **image_kwargs)
    # Created on its device: a model loaded on the host first needs its size in host memory.
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=getattr(torch, dtype), device_map=device)
    model.eval()
    return model, processor

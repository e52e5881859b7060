"""Processors for HF VLMs on machines without torchvision.

transformers' Qwen2-VL processor insists on a video processor, which needs
torchvision; torchvision is not usable here. We never feed videos, so an image-only
Qwen2-VL processor (the PIL image processor plus the tokenizer) does the same work for
images and text. `load_processor` tries the checkpoint's own processor first.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

logger = logging.getLogger(__name__)


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor without the (torchvision-only) video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


# What Qwen2-VL's video processor shares with its image processor (the rest: its defaults).
VIDEO_SETTINGS = ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")


def save_processor(processor, out_dir: str | Path) -> None:
    """Save so that the folder names the standard Qwen2-VL processor: machines with
    torchvision load it with AutoProcessor (vLLM does), ours through `load_processor`. The
    image-only processor writes the video processor's config too (from the image
    processor's settings): the standard processor will not load without one."""
    processor.save_pretrained(out_dir)
    config_path = Path(out_dir) / "processor_config.json"
    if isinstance(processor, ImageOnlyQwen2VLProcessor) and config_path.is_file():
        config = json.loads(config_path.read_text())
        config["processor_class"] = "Qwen2VLProcessor"
        config_path.write_text(json.dumps(config, indent=2))
        image = config.get("image_processor", {})
        video = {key: image[key] for key in VIDEO_SETTINGS if key in image}
        video["video_processor_type"] = "Qwen2VLVideoProcessor"
        (Path(out_dir) / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))


def _image_processor_config(path: Path) -> dict:
    legacy = path / "preprocessor_config.json"
    if legacy.is_file():
        return json.loads(legacy.read_text())
    combined = path / "processor_config.json"
    if combined.is_file():
        return dict(json.loads(combined.read_text()).get("image_processor", {}))
    raise ValueError(f"{path}: no preprocessor_config.json or processor_config.json (is it a VLM folder?)")


def load_processor(path: str | Path, **image_kwargs):
    """The processor of an HF folder: its own, or the image-only Qwen2-VL one."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model folder not found: {path}")
    try:
        processor = AutoProcessor.from_pretrained(str(path), **image_kwargs)
        if hasattr(processor, "image_processor"):
            return processor
    except (ImportError, TypeError, ValueError, OSError) as error:
        logger.debug("AutoProcessor failed for %s (%s); using the image-only Qwen2-VL processor", path, error)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    config = _image_processor_config(path)
    config.pop("image_processor_type", None)
    config.update(image_kwargs)
    image_processor = Qwen2VLImageProcessorPil(**config)
    return ImageOnlyQwen2VLProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)

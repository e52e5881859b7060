"""A record's prompt as the model takes it, made once and batched without the processor.

Rendering the chat template, reading the images and running the image processor cost
more than a small model's forward pass. A training step makes each prompt's
`EncodedPrompt` once (on the driver); the rollout workers, the reference and the policy
then only pad and stack tensors (`generation_batch`, `sequences.collate`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data.prompts import build_messages, prompt_text
from ..data.records import Record

# Keys of a processor's output that are per token; every other tensor (pixel values, image
# grids, image sizes) is per image and is concatenated over the batch.
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def record_prompt(processor, record: Record, family: str) -> str:
    """The chat-templated prompt of a record (0-shot or 1-shot by its image count)."""
    text = prompt_text(family, len(record.images) - 1, record.question)
    return processor.apply_chat_template(build_messages(text), add_generation_prompt=True, tokenize=False)


def load_images(record: Record):
    from PIL import Image

    images = []
    for path in record.images:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


@dataclass
class EncodedPrompt:
    """One prompt's token ids, per-token image markers (if the model has them) and vision inputs."""

    input_ids: list[int]
    token_types: list[int] | None = None
    vision: dict[str, torch.Tensor] = field(default_factory=dict)
    images: list | None = None  # the PIL images (an engine that processes images itself takes these)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_prompt(processor, record: Record, family: str) -> EncodedPrompt:
    """The chat-templated prompt of a record with its images (0- or 1-shot by image count)."""
    images = load_images(record)
    encoded = processor(text=[record_prompt(processor, record, family)], images=images, return_tensors="pt")
    token_types = encoded.get("mm_token_type_ids")
    return EncodedPrompt(
        input_ids=encoded["input_ids"][0].tolist(),
        token_types=token_types[0].tolist() if token_types is not None else None,
        vision={k: v for k, v in encoded.items() if k not in TOKEN_KEYS and isinstance(v, torch.Tensor)},
        images=images,
    )


def encode_prompts(processor, records: Sequence[Record], family: str) -> list[EncodedPrompt]:
    """`encode_prompt` for every record, with one processor call for them all (a call per
    record costs about twice as much on a small model), split back per record."""
    if len(records) < 2:
        return [encode_prompt(processor, record, family) for record in records]
    images = [load_images(record) for record in records]
    encoded = processor(
        text=[record_prompt(processor, record, family) for record in records],
        images=[image for per_record in images for image in per_record],
        return_tensors="pt",
        padding=True,
    )
    vision = _split_vision(encoded, [len(per_record) for per_record in images])
    if vision is None:  # a processor whose image tensors we cannot split: one call each
        return [encode_prompt(processor, record, family) for record in records]
    keep = encoded["attention_mask"].bool()
    types = encoded.get("mm_token_type_ids")
    return [
        EncodedPrompt(
            input_ids=encoded["input_ids"][row][keep[row]].tolist(),
            token_types=types[row][keep[row]].tolist() if types is not None else None,
            vision=vision[row],
            images=images[row],
        )
        for row in range(len(records))
    ]


def _split_vision(encoded, images_per_prompt: list[int]) -> list[dict[str, torch.Tensor]] | None:
    """The per-image tensors of a batch, split by prompt: one row per image, or (Qwen2-VL's
    flattened patches) `t × h × w` rows per image as `image_grid_thw` says."""
    count = sum(images_per_prompt)
    grid = encoded.get("image_grid_thw")
    rows_per_image = grid.prod(dim=-1).tolist() if grid is not None else None
    vision: list[dict[str, torch.Tensor]] = [{} for _ in images_per_prompt]
    for key, value in encoded.items():
        if key in TOKEN_KEYS or not isinstance(value, torch.Tensor):
            continue
        if value.shape[0] == count:
            sizes = images_per_prompt
        elif rows_per_image is not None and value.shape[0] == sum(rows_per_image):
            bounds = [0]
            for n in images_per_prompt:
                bounds.append(bounds[-1] + n)
            sizes = [sum(rows_per_image[a:b]) for a, b in itertools.pairwise(bounds)]
        else:
            return None
        for row, part in enumerate(torch.split(value, sizes)):
            vision[row][key] = part
    return vision


def stack_vision(prompts: Sequence[EncodedPrompt]) -> dict[str, torch.Tensor]:
    """The vision inputs of a batch, in prompt order."""
    keys = prompts[0].vision.keys() if prompts else ()
    return {key: torch.cat([p.vision[key] for p in prompts]) for key in keys}


def generation_batch(prompts: Sequence[EncodedPrompt], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded inputs for `generate`."""
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt) :] = torch.tensor(prompt.input_ids)
        attention[row, length - len(prompt) :] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention, **stack_vision(prompts)}
    if prompts[0].token_types is not None:
        types = torch.zeros((len(prompts), length), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            types[row, length - len(prompt) :] = torch.tensor(prompt.token_types)
        batch["mm_token_type_ids"] = types
    return batch

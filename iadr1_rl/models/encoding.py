"""A record's prompt as the model takes it, made once and batched without the processor.

Rendering the chat template, reading the images and running the image processor cost
more than a small model's forward pass. A training step makes each prompt's
`EncodedPrompt` once (on the driver); the rollout workers, the reference and the policy
then only pad and stack tensors (`generation_batch`, `sequences.collate`).
"""

from __future__ import annotations

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

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_prompt(processor, record: Record, family: str) -> EncodedPrompt:
    """The chat-templated prompt of a record with its images (0- or 1-shot by image count)."""
    encoded = processor(
        text=[record_prompt(processor, record, family)], images=load_images(record), return_tensors="pt"
    )
    token_types = encoded.get("mm_token_type_ids")
    return EncodedPrompt(
        input_ids=encoded["input_ids"][0].tolist(),
        token_types=token_types[0].tolist() if token_types is not None else None,
        vision={k: v for k, v in encoded.items() if k not in TOKEN_KEYS and isinstance(v, torch.Tensor)},
    )


def encode_prompts(processor, records: Sequence[Record], family: str) -> list[EncodedPrompt]:
    return [encode_prompt(processor, record, family) for record in records]


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

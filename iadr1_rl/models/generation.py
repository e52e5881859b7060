"""Batched prompting and generation shared by evaluation and rollout workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..data.prompts import build_messages, prompt_text
from ..data.records import Record


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1


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


def encode_prompts(processor, records: Sequence[Record], family: str):
    """Processor inputs for a batch (left-padded for generation)."""
    processor.tokenizer.padding_side = "left"
    texts = [record_prompt(processor, r, family) for r in records]
    images = [image for r in records for image in load_images(r)]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def generate_texts(model, processor, records: Sequence[Record], family: str, sampling: SamplingConfig) -> list[str]:
    """Completions for each record (`num_return_sequences` per record, in order)."""
    import torch

    inputs = encode_prompts(processor, records, family).to(model.device)
    kwargs = {"max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.do_sample}
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
    if sampling.num_return_sequences > 1:
        kwargs["num_return_sequences"] = sampling.num_return_sequences
    tokenizer = processor.tokenizer
    with torch.no_grad():
        output = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.pad_token_id)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

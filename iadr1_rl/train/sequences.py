"""Prompt + response token sequences, batched for the VLM, with response masks.

The prompt goes through the processor (which expands image placeholders and makes
pixel values); the response is appended as token ids (for SFT tokenised from the
target text plus the end-of-turn token; for GRPO the rollout's own token ids, so the
trained tokens are exactly the sampled ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.records import Record
from ..models.generation import load_images, record_prompt


@dataclass
class Sample:
    """One prompt (with its images) and one response as token ids."""

    record: Record
    response_ids: list[int]


def end_of_turn_ids(tokenizer) -> list[int]:
    """The tokens that close an assistant turn (`<|im_end|>` for ChatML models)."""
    eos = tokenizer.eos_token
    return tokenizer(eos, add_special_tokens=False)["input_ids"] if eos else []


def target_ids(tokenizer, response: str) -> list[int]:
    """An SFT target: the response and the end-of-turn token, so the model learns to stop."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + end_of_turn_ids(tokenizer)


def collate(processor, samples: Sequence[Sample], family: str) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, response mask and the vision inputs."""
    prompts = [record_prompt(processor, s.record, family) for s in samples]
    images = [image for s in samples for image in load_images(s.record)]
    encoded = processor(text=prompts, images=images, return_tensors="pt", padding=False)
    prompt_ids = encoded["input_ids"]
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.tolist()
    sequences = [list(p) + list(s.response_ids) for p, s in zip(prompt_ids, samples)]
    length = max(len(seq) for seq in sequences)
    pad = processor.tokenizer.pad_token_id or 0
    input_ids = torch.full((len(samples), length), pad, dtype=torch.long)
    attention = torch.zeros((len(samples), length), dtype=torch.long)
    response_mask = torch.zeros((len(samples), length), dtype=torch.bool)
    for row, (prompt, sample) in enumerate(zip(prompt_ids, samples)):
        total = len(prompt) + len(sample.response_ids)
        input_ids[row, :total] = torch.tensor(list(prompt) + list(sample.response_ids))
        attention[row, :total] = 1
        response_mask[row, len(prompt) : total] = True
    batch = {"input_ids": input_ids, "attention_mask": attention, "response_mask": response_mask}
    if "mm_token_type_ids" in encoded:  # which tokens are image tokens (M-RoPE needs it)
        types = torch.zeros((len(samples), length), dtype=torch.long)
        for row, prompt_types in enumerate(encoded["mm_token_type_ids"]):
            prompt_types = list(prompt_types.tolist() if isinstance(prompt_types, torch.Tensor) else prompt_types)
            types[row, : len(prompt_types)] = torch.tensor(prompt_types)
        batch["mm_token_type_ids"] = types
    for key in ("pixel_values", "image_grid_thw"):
        if key in encoded:
            batch[key] = encoded[key]
    return batch


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
    return {k: v for k, v in batch.items() if k in keys}


def token_logprobs(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t ≥ 1, shape (B, T-1); mask with `response_mask[:, 1:]`."""
    logits = model(**model_inputs(batch), use_cache=False).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = batch["input_ids"][:, 1:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

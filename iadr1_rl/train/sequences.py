"""Prompt + response token sequences, batched for the VLM, with response masks.

The prompt comes encoded (`models.encoding.EncodedPrompt`: made once per step, its image
placeholders expanded and its pixel values ready); the response is appended as token ids
(for SFT tokenised from the target text plus the end-of-turn token; for GRPO the
rollout's own token ids, so the trained tokens are exactly the sampled ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.encoding import EncodedPrompt, stack_vision


@dataclass
class Sample:
    """One encoded prompt and one response as token ids."""

    prompt: EncodedPrompt
    response_ids: list[int]


def end_of_turn_ids(tokenizer) -> list[int]:
    """The tokens that close an assistant turn (`<|im_end|>` for ChatML models)."""
    eos = tokenizer.eos_token
    return tokenizer(eos, add_special_tokens=False)["input_ids"] if eos else []


def target_ids(tokenizer, response: str) -> list[int]:
    """An SFT target: the response and the end-of-turn token, so the model learns to stop."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + end_of_turn_ids(tokenizer)


def collate(samples: Sequence[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, response mask and the vision inputs."""
    length = max(len(s.prompt) + len(s.response_ids) for s in samples)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(samples), length), dtype=torch.long)
    response_mask = torch.zeros((len(samples), length), dtype=torch.bool)
    for row, sample in enumerate(samples):
        prompt, total = len(sample.prompt), len(sample.prompt) + len(sample.response_ids)
        input_ids[row, :total] = torch.tensor(sample.prompt.input_ids + list(sample.response_ids))
        attention[row, :total] = 1
        response_mask[row, prompt:total] = True
    batch = {"input_ids": input_ids, "attention_mask": attention, "response_mask": response_mask}
    if samples[0].prompt.token_types is not None:  # which tokens are image tokens (M-RoPE needs it)
        types = torch.zeros((len(samples), length), dtype=torch.long)
        for row, sample in enumerate(samples):
            types[row, : len(sample.prompt)] = torch.tensor(sample.prompt.token_types)
        batch["mm_token_type_ids"] = types
    return {**batch, **stack_vision([s.prompt for s in samples])}


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "response_mask"}


def token_logprobs(
    model, batch: dict[str, torch.Tensor], temperature: float = 1.0, suppressed: Sequence[int] = ()
) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t ≥ 1 at `temperature`, shape (B, T-1); mask with
    `response_mask[:, 1:]`. GRPO passes the rollouts' sampling temperature and the tokens
    generation suppresses: the ratio and the KL are then those of the very distribution the
    rollouts were drawn from (OpenRLHF divides its logits by the temperature likewise)."""
    logits = model(**model_inputs(batch), use_cache=False).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    if suppressed:
        logits[..., list(suppressed)] = float("-inf")
    targets = batch["input_ids"][:, 1:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if suppressed:  # only prompts hold those tokens (image pads); 0, not -inf, where nothing reads them
        logprobs = logprobs.masked_fill(torch.isin(targets, torch.tensor(list(suppressed), device=targets.device)), 0.0)
    return logprobs

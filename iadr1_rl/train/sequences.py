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


@dataclass
class GRPOBatch:
    """What one policy update trains on: samples, their advantages, the reference's
    log-probs of their response tokens and, off-policy, the sampling policy's."""

    samples: list[Sample]
    advantages: list[float]
    ref_logprobs: list[list[float]]
    old_logprobs: list[list[float]] | None = None
    # The rollout engine's own log-probs of the sampled tokens, where it reports them: on
    # policy, the update compares them with its own (the rollout_logprob_gap).
    sampling_logprobs: list[list[float]] | None = None
    # One rank's share of an update: the response tokens of the whole update (the token
    # mean's denominator; None: these samples' own), and 0 for a share that only keeps a
    # rank given no samples in step with the others.
    normaliser: int | None = None
    weight: float = 1.0


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

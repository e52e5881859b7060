"""RolloutActor: samples G completions per prompt; receives the policy's weights after
every update. HF `generate` on CPU; vLLM when asked for (GPU and vllm required)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.records import Record
from ..models.generation import SamplingConfig, encode_prompts
from .base import ModelActor


@dataclass
class Rollout:
    """One sampled completion: which prompt, its token ids (end-of-turn included when
    the model stopped) and its text."""

    prompt_index: int
    token_ids: list[int]
    text: str
    truncated: bool


class RolloutActor(ModelActor):
    def __init__(self, *args, use_vllm: bool = False, **kwargs) -> None:
        if use_vllm:
            from ..eval.vllm_backend import require_vllm

            require_vllm()
            raise NotImplementedError(
                "vLLM rollouts run through the OpenRLHF backend (resources.backend: openrlhf); "
                "the local backend generates with HF generate"
            )
        super().__init__(*args, **kwargs)
        self.model.eval()

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> int:
        """Take the policy's weights; returns the version count for the driver to check."""
        self.model.load_state_dict(state_dict)
        self.version = getattr(self, "version", 0) + 1
        return self.version

    @torch.no_grad()
    def generate(
        self, records: Sequence[Record], group_size: int, sampling: SamplingConfig, seed: int
    ) -> list[Rollout]:
        """`group_size` sampled completions for each record, in record order."""
        torch.manual_seed(seed)  # sampling depends on (seed, step) only: resumable
        inputs = encode_prompts(self.processor, records, self.family).to(self.model.device)
        tokenizer = self.processor.tokenizer
        output = self.model.generate(
            **inputs,
            max_new_tokens=sampling.max_new_tokens,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            num_return_sequences=group_size,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        eos_ids = self.model.generation_config.eos_token_id
        eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        rollouts = []
        for row, tokens in enumerate(new_tokens):
            end = next((i for i, t in enumerate(tokens) if t in eos), None)
            kept = tokens[: end + 1] if end is not None else tokens
            text = tokenizer.decode(kept, skip_special_tokens=True)
            rollouts.append(Rollout(row // group_size, kept, text, end is None))
        return rollouts

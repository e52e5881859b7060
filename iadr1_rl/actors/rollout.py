"""RolloutActor: samples G completions per prompt; receives the policy's weights after
every update. HF `generate` on CPU; vLLM rollouts run through the OpenRLHF backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.encoding import EncodedPrompt
from ..models.generation import SamplingConfig, generate_token_ids
from .base import ModelActor


@dataclass
class Rollout:
    """One sampled completion: its token ids (end-of-turn included when the model
    stopped) and its text."""

    token_ids: list[int]
    text: str
    truncated: bool


class RolloutActor(ModelActor):
    def __init__(self, *args, use_vllm: bool = False, **kwargs) -> None:
        if use_vllm:
            raise ValueError(
                "resources.use_vllm: vLLM rollouts run through the OpenRLHF backend (resources.backend: openrlhf); "
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
        self, prompts: Sequence[EncodedPrompt], group_size: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Rollout]]:
        """`group_size` sampled completions for each prompt: one group per prompt, in order."""
        torch.manual_seed(seed)  # sampling depends on (seed, step) only: resumable
        sampling = SamplingConfig(
            sampling.max_new_tokens, True, sampling.temperature, sampling.top_p, num_return_sequences=group_size
        )
        new_tokens = generate_token_ids(self.model, self.processor, prompts, sampling)
        eos_ids = self.model.generation_config.eos_token_id
        eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        tokenizer = self.processor.tokenizer
        rollouts = []
        for tokens in new_tokens:
            end = next((i for i, t in enumerate(tokens) if t in eos), None)
            kept = tokens[: end + 1] if end is not None else tokens
            rollouts.append(Rollout(kept, tokenizer.decode(kept, skip_special_tokens=True), end is None))
        return [rollouts[i : i + group_size] for i in range(0, len(rollouts), group_size)]

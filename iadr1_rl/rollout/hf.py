"""The HF `generate` engine: the CPU default, and the reference the others are checked against."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import torch

from ..models.encoding import EncodedPrompt
from ..models.generation import SamplingConfig, generate_token_ids
from ..models.loading import load_vlm
from .engine import Completion, RolloutEngine, grouped
from .weight_sync import checkpoint_named_parameters


class HFEngine(RolloutEngine):
    """Samples with the model's own `generate` on the actor's device."""

    def __init__(
        self, model_path: str, dtype: str = "float32", max_pixels: int | None = None, device: str = "cpu"
    ) -> None:
        self.model, self.processor = load_vlm(model_path, dtype=dtype, device=device, max_pixels=max_pixels)
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        # Syncs name parameters as checkpoints do (`weight_sync.checkpoint_named_parameters`).
        self.parameters = dict(checkpoint_named_parameters(self.model))
        self._receiver = None  # a direct transport's half (`torch_transfer`), once joined

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[EncodedPrompt], sampling: SamplingConfig, seeds: Sequence[Sequence[int]]
    ) -> list[list[Completion]]:
        group_size = len(seeds[0]) if seeds else 1
        sampling = replace(sampling, num_return_sequences=group_size)
        new_tokens, logprobs = generate_token_ids(self.model, self.processor, prompts, sampling, seeds)
        completions = [
            self._completion(tokens, None if logprobs is None else logprobs[row])
            for row, tokens in enumerate(new_tokens)
        ]
        return grouped(completions, seeds)

    def _completion(self, tokens: list[int], logprobs: list[float] | None) -> Completion:
        """The tokens up to and including the first end-of-turn (the rest is padding)."""
        end = next((i for i, t in enumerate(tokens) if t in self.eos), None)
        kept = tokens[: end + 1] if end is not None else tokens
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(
            kept, text, "stop" if end is not None else "length", None if logprobs is None else logprobs[: len(kept)]
        )

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in self.parameters:
                    raise KeyError(f"the rollout model has no parameter {name!r}: policy and engine differ")
                self.parameters[name].copy_(tensor)

    def init_transfer(self, init_info: dict) -> None:
        from .torch_transfer import receiver

        self._receiver = receiver(init_info, self.model.device)

    def receive(self, update_info: dict) -> None:
        if self._receiver is None:
            raise RuntimeError("init_transfer() joins the trainer's transport before weights arrive")
        self._receiver.receive(update_info, self.load_weights)

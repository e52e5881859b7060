"""What every model actor does: load a VLM once, set its threads, measure its peak memory,
and score response tokens (forward only, in micro-batches by token budget)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from ..memory.meter import PeakMemory
from ..models.generation import vision_token_ids
from ..models.loading import import_model_code, load_vlm
from ..train.logprobs import response_logprobs
from ..train.micro_batches import token_budget_batches
from ..train.sequences import Sample, collate
from .placement import assigned_device

logger = logging.getLogger(__name__)

# The most padded tokens a forward-only log-prob pass holds (memory.logprob_tokens).
DEFAULT_LOGPROB_TOKENS = 65536


def start_actor(model_path: str, torch_threads: int, device: str, engine: str | None = None) -> PeakMemory:
    """What every actor does before its model loads: set its threads, import the code the
    model (and a rollout engine) runs on, and start the memory meter on its device, whose
    baseline then is the process's own (interpreter, libraries), not the model's."""
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    import_model_code(model_path)
    if engine is not None:
        from ..rollout.engine import engine_class

        engine_class(engine)
    return PeakMemory(device)


class ModelActor:
    """Holds one model and its processor."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        family: str = "train",
        torch_threads: int = 0,
        max_pixels: int | None = None,
        logprob_tokens: int = DEFAULT_LOGPROB_TOKENS,
        device: str | None = None,
    ) -> None:
        device = device or assigned_device()  # None: the GPU Ray assigned this actor, or the CPU
        self.memory = start_actor(model_path, torch_threads, device)
        self.model, self.processor = load_vlm(model_path, dtype=dtype, device=device, max_pixels=max_pixels)
        self.family = family
        self.model_path = model_path
        self.logprob_tokens = logprob_tokens
        self.suppressed = vision_token_ids(self.model)  # as generation suppresses them
        logger.info("%s loaded %s on %s (pid %d)", type(self).__name__, model_path, device, os.getpid())

    def ready(self) -> bool:
        return True

    def peak_memory(self) -> float | None:
        """Bytes at the peak since the last call (the driver asks once per step)."""
        return self.memory.take()

    def batch(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        pad = self.processor.tokenizer.pad_token_id or 0
        return {k: v.to(self.model.device) for k, v in collate(samples, pad).items()}

    @torch.no_grad()
    def response_logprobs(self, samples: Sequence[Sample], temperature: float = 1.0) -> list[list[float]]:
        """log p of each response token at `temperature`, per sample (no gradients), in
        forward passes of at most `logprob_tokens` padded tokens."""
        out: list[list[float]] = [[] for _ in samples]
        lengths = [len(s.prompt) + len(s.response_ids) for s in samples]
        parts = token_budget_batches(lengths, self.logprob_tokens, "memory.logprob_tokens")
        for part, weight in self.micro_batches(parts):
            chosen = [samples[i] for i in part]
            flat = response_logprobs(self.model, self.batch(chosen), temperature, self.suppressed).tolist()
            if weight:  # a filler forward only keeps a sharded model's ranks in step
                for i, values in zip(part, split_by_response(flat, chosen)):
                    out[i] = values
        return out

    def micro_batches(self, parts: list[list[int]]) -> list[tuple[list[int], float]]:
        """The forward passes to run, (sample indices, weight): these parts, each once (a
        policy rank runs as many as its group's other ranks)."""
        return [(part, 1.0) for part in parts]


def split_by_response(flat: Sequence[float], samples: Sequence[Sample]) -> list[list[float]]:
    """Per-sample lists of a flat per-response-token sequence."""
    out, start = [], 0
    for sample in samples:
        out.append(list(flat[start : start + len(sample.response_ids)]))
        start += len(sample.response_ids)
    return out

"""What every actor does: load a VLM once, set its threads, score response tokens."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from ..models.generation import vision_token_ids
from ..models.loading import load_vlm
from ..train.sequences import Sample, collate, token_logprobs

logger = logging.getLogger(__name__)


class ModelActor:
    """Holds one model and its processor."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        family: str = "train",
        torch_threads: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.processor = load_vlm(model_path, dtype=dtype, device=device, max_pixels=max_pixels)
        self.family = family
        self.model_path = model_path
        self.suppressed = vision_token_ids(self.model)  # as generation suppresses them
        logger.info("%s loaded %s on %s (pid %d)", type(self).__name__, model_path, device, os.getpid())

    def ready(self) -> bool:
        return True

    def batch(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        pad = self.processor.tokenizer.pad_token_id or 0
        return {k: v.to(self.model.device) for k, v in collate(samples, pad).items()}

    @torch.no_grad()
    def response_logprobs(self, samples: Sequence[Sample], temperature: float = 1.0) -> list[list[float]]:
        """log p of each response token at `temperature`, per sample (no gradients)."""
        batch = self.batch(samples)
        logprobs = token_logprobs(self.model, batch, temperature, self.suppressed)
        mask = batch["response_mask"][:, 1:]
        return [row[m].tolist() for row, m in zip(logprobs, mask)]

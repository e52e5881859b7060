"""Evaluation's generation with vLLM: the rollout workers' engine (`rollout/vllm.py`),
sampling as the evaluation asks (greedy unless told otherwise). Importable without vLLM;
using it without vLLM is one clear error naming `make install-vllm`."""

from __future__ import annotations

from pathlib import Path

from ..data.records import Record
from ..models.encoding import encode_prompts
from ..models.generation import SamplingConfig
from ..rollout import sample_seeds


class VLLMGenerator:
    def __init__(
        self,
        model_dir: str | Path,
        family: str,
        sampling: SamplingConfig,
        dtype: str = "bfloat16",
        engine=None,
        device: str = "cpu",
    ) -> None:
        from ..rollout.vllm import VLLMEngine

        # One engine per process: vLLM keeps process-wide state that a second one disturbs.
        self.engine = engine or VLLMEngine(str(model_dir), dtype=dtype, images_per_prompt=2, device=device)
        self.family = family
        self.sampling = sampling

    def generate(self, records: list[Record]) -> list[str]:
        prompts = encode_prompts(self.engine.processor, records, self.family)
        seeds = sample_seeds(0, 0, range(len(prompts)), self.sampling.num_return_sequences)
        groups = self.engine.generate(prompts, self.sampling, seeds)
        return [completion.text for group in groups for completion in group]

"""Generation with vLLM (GPU only). Importable without vLLM; using it without vLLM and
a GPU raises a clear error instead of failing deep inside."""

from __future__ import annotations

from pathlib import Path

from ..data.records import Record
from ..models.encoding import load_images, record_prompt
from ..models.generation import SamplingConfig


def require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise RuntimeError("the vllm backend needs `pip install vllm` (GPU machines only)") from error
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("the vllm backend needs a CUDA GPU; use --backend hf on CPU")


class VLLMGenerator:
    def __init__(self, model_dir: str | Path, family: str, sampling: SamplingConfig, dtype: str = "bfloat16") -> None:
        require_vllm()
        from vllm import LLM, SamplingParams

        from ..models.processor import load_processor

        self.processor = load_processor(model_dir)
        self.family = family
        self.llm = LLM(model=str(model_dir), dtype=dtype, limit_mm_per_prompt={"image": 2})
        self.params = SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature if sampling.do_sample else 0.0,
            top_p=sampling.top_p,
            n=sampling.num_return_sequences,
        )

    def generate(self, records: list[Record]) -> list[str]:
        requests = [
            {"prompt": record_prompt(self.processor, r, self.family), "multi_modal_data": {"image": load_images(r)}}
            for r in records
        ]
        outputs = self.llm.generate(requests, self.params, use_tqdm=False)
        return [o.text for output in outputs for o in output.outputs]

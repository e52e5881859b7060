"""Batched generation shared by evaluation and rollout workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..data.records import Record
from .encoding import encode_prompts, generation_batch


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1

    def generate_kwargs(self) -> dict:
        """`generate` arguments: sampling settings only when sampling (greedy ignores them)."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            # top_k 0: no top-k cut. HF samples from the 50 likeliest tokens unless told so,
            # which is not the policy the config names (nor what OpenRLHF's vLLM samples).
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        if self.num_return_sequences > 1:
            kwargs["num_return_sequences"] = self.num_return_sequences
        return kwargs


def vision_token_ids(model) -> list[int]:
    """The image and video placeholder ids: never to be generated (a sampled one would not
    match the image features of the next forward pass; TRL suppresses them too)."""
    config = model.config
    return [
        i for i in (getattr(config, "image_token_id", None), getattr(config, "video_token_id", None)) if i is not None
    ]


def generate_token_ids(model, processor, prompts, sampling: SamplingConfig) -> list[list[int]]:
    """New token ids of each completion (`num_return_sequences` per prompt, in order),
    padding included; `prompts` are `EncodedPrompt`s."""
    import torch

    tokenizer = processor.tokenizer
    inputs = {k: v.to(model.device) for k, v in generation_batch(prompts, tokenizer.pad_token_id or 0).items()}
    kwargs = {**sampling.generate_kwargs(), "pad_token_id": tokenizer.pad_token_id}
    if vision_token_ids(model):
        kwargs["suppress_tokens"] = vision_token_ids(model)
    with torch.no_grad():
        output = model.generate(**inputs, **kwargs)
    return output[:, inputs["input_ids"].shape[1] :].tolist()


def generate_texts(model, processor, records: Sequence[Record], family: str, sampling: SamplingConfig) -> list[str]:
    """Completions for each record (`num_return_sequences` per record, in order)."""
    new_tokens = generate_token_ids(model, processor, encode_prompts(processor, records, family), sampling)
    return processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

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


def vision_token_ids(model) -> list[int]:
    """The image and video placeholder ids: never to be generated (a sampled one would not
    match the image features of the next forward pass; TRL suppresses them too)."""
    config = model.config
    return [
        i for i in (getattr(config, "image_token_id", None), getattr(config, "video_token_id", None)) if i is not None
    ]


class SeededSampler:
    """A logits processor that draws each row's next token from the row's own random stream
    (its seed), so that a completion depends on its seed alone, never on what else shares
    the batch; it keeps each drawn token's log-prob under the distribution drawn from.

    The draw is the Gumbel-max one: the arg-max of the scores at the temperature (suppressed
    tokens already at -inf, then the top-p cut) plus Gumbel noise from the row's generator is
    a sample of their softmax. It returns that token alone at 0 and every other at -inf, so
    that greedy decoding takes it. The log-prob is the drawn token's under that distribution
    (after the top-p cut, as vLLM's `processed_logprobs` are).
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self.generators = None
        self.logprobs: list = []  # per step: (rows,) float32

    def __call__(self, input_ids, scores):
        import torch

        if self.generators is None:
            self.generators = [torch.Generator(scores.device).manual_seed(seed) for seed in self.seeds]
        # In place where it can be: these are (rows × vocabulary) float32 tensors every step.
        scores = scores.float()
        if self.temperature != 1.0:
            scores = scores.div_(self.temperature)
        if self.top_p < 1.0:
            from transformers import TopPLogitsWarper

            scores = TopPLogitsWarper(self.top_p)(input_ids, scores)
        # One working buffer: the log-partition first, then the noise, then the one-hot scores.
        work = torch.empty_like(scores)
        top = scores.amax(dim=-1, keepdim=True)
        log_partition = work.copy_(scores).sub_(top).exp_().sum(dim=-1, keepdim=True).log_().add_(top)
        for row, generator in enumerate(self.generators):
            work[row].uniform_(generator=generator)
        tiny = torch.finfo(torch.float32).tiny
        # Gumbel noise -log(-log u), added to the scores.
        work.clamp_(tiny, 1.0 - 1e-7).log_().neg_().log_().neg_().add_(scores)
        chosen = work.argmax(dim=-1, keepdim=True)
        self.logprobs.append((scores.gather(-1, chosen) - log_partition).squeeze(-1))
        return work.fill_(float("-inf")).scatter_(-1, chosen, 0.0)


def generate_token_ids(
    model, processor, prompts, sampling: SamplingConfig, seeds: Sequence[Sequence[int]] | None = None
) -> tuple[list[list[int]], list[list[float]] | None]:
    """New token ids of each completion (`num_return_sequences` per prompt, in order; padding
    included) and, when sampling, each token's log-prob under the distribution it was drawn
    from. Sampling takes one seed per completion (`seeds[i]`: prompt i's), each drawn from
    its own stream (`SeededSampler`); greedy takes none."""
    import torch

    tokenizer = processor.tokenizer
    kwargs = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if vision_token_ids(model):
        kwargs["suppress_tokens"] = vision_token_ids(model)
    # The policy the config names, not the checkpoint's own sampling defaults.
    kwargs["repetition_penalty"] = 1.0
    sampler = None
    if sampling.do_sample:
        if seeds is None or [len(s) for s in seeds] != [sampling.num_return_sequences] * len(prompts):
            raise ValueError("sampling takes one seed per completion: num_return_sequences seeds for each prompt")
        # Every completion its own row (greedy over the sampler's one-hot scores takes its draw).
        prompts = [prompt for prompt in prompts for _ in range(sampling.num_return_sequences)]
        sampler = SeededSampler(
            [seed for per_prompt in seeds for seed in per_prompt], sampling.temperature, sampling.top_p
        )
        kwargs.update(do_sample=False, logits_processor=[sampler])
    else:
        kwargs.update(do_sample=False, num_return_sequences=sampling.num_return_sequences)
    inputs = {k: v.to(model.device) for k, v in generation_batch(prompts, tokenizer.pad_token_id or 0).items()}
    with torch.no_grad():
        output = model.generate(**inputs, **kwargs)
    new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
    if sampler is None:
        return new_tokens, None
    logprobs = torch.stack(sampler.logprobs, dim=1) if sampler.logprobs else torch.zeros(len(new_tokens), 0)
    return new_tokens, logprobs.tolist()


def generate_texts(model, processor, records: Sequence[Record], family: str, sampling: SamplingConfig) -> list[str]:
    """Greedy completions for each record (`num_return_sequences` per record, in order)."""
    if sampling.do_sample:
        raise ValueError("generate_texts is greedy (evaluation); sampled rollouts go through a rollout engine")
    new_tokens, _ = generate_token_ids(model, processor, encode_prompts(processor, records, family), sampling)
    return processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

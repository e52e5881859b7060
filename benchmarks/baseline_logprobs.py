"""The straightforward log-probs the memory-safe path replaced, for the step benchmark's
comparison and as the tests' oracle: the model's full logits over every position, a float
copy, a log-softmax over the whole vocabulary, then the chosen tokens picked out."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def full_vocabulary_logprobs(
    model, batch: dict[str, torch.Tensor], temperature: float = 1.0, suppressed: Sequence[int] = ()
) -> torch.Tensor:
    """log p of every response token of a `sequences.collate` batch, flat (N,), computed
    over every position and the whole vocabulary."""
    inputs = {k: v for k, v in batch.items() if k != "response_mask"}
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    if suppressed:
        logits[..., list(suppressed)] = float("-inf")
    targets = batch["input_ids"][:, 1:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if suppressed:  # only prompts hold those tokens (image pads); 0, not -inf, where nothing reads them
        logprobs = logprobs.masked_fill(torch.isin(targets, torch.tensor(list(suppressed), device=targets.device)), 0.0)
    return logprobs[batch["response_mask"][:, 1:]]

"""Log-probs of response tokens only, without the full-vocabulary logits of the batch.

The straightforward way — `model(...).logits`, a float copy, a log-softmax over every
position — holds batch × length × vocabulary values several times over: for 32 samples of
~600 tokens and Qwen's 151,936-token vocabulary, ~5 GB of bf16 logits, ~11 GB of float32
copy and ~11 GB of log-softmax, most of them at prompt and image positions whose log-probs
no one reads. Here the model's body runs once, the final hidden states of the positions
that predict a response token are picked out, and the LM head runs on them a chunk at a
time: the chosen token's logit minus the logsumexp of its row (a selective log-softmax),
float32 only inside a chunk. With gradients, each chunk is checkpointed, so its logits are
freed after the forward and recomputed one chunk at a time in the backward: at most one
chunk of logits is alive at any moment (as TRL's selective log-softmax, OpenRLHF's chunked
logsumexp and verl's fused log-probs avoid the same cost).

One function serves the policy (with gradients), the reference and the old log-probs
(without), at the sampling temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.checkpoint import checkpoint

# Logit values one chunk may hold: 2**26 float32 values are 256 MiB (441 positions at a
# 151,936-token vocabulary); a chunk's transient peak is a few times that.
CHUNK_VALUES = 2**26


def decoder_hidden_states(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The final (normed) hidden states of every position, (B, T, H): the model's body
    without its LM head (`model.model` for HF's vision-language models)."""
    body = getattr(model, model.base_model_prefix)
    inputs = {k: v for k, v in batch.items() if k != "response_mask"}
    return body(**inputs, use_cache=False).last_hidden_state


def selective_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    suppressed: Sequence[int] = (),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) at `temperature` for (N, H) hidden states and (N,)
    targets, the LM head applied `chunk_size` rows at a time.

    `suppressed` tokens (image placeholders, which sampling never draws) are excluded from
    the distribution, as the sampler excluded them; a target that is one of them scores 0.
    """
    if chunk_size is None:
        chunk_size = max(1, CHUNK_VALUES // head.weight.shape[0])
    suppressed_ids = torch.tensor(list(suppressed), dtype=torch.long, device=hidden.device)
    keep_graph = torch.is_grad_enabled() and hidden.requires_grad
    parts = []
    for start in range(0, hidden.shape[0], chunk_size):
        rows, chosen = hidden[start : start + chunk_size], targets[start : start + chunk_size]
        if keep_graph:  # recompute this chunk's logits in the backward instead of keeping them
            parts.append(
                checkpoint(_chunk_logprobs, head, rows, chosen, temperature, suppressed_ids, use_reentrant=False)
            )
        else:
            parts.append(_chunk_logprobs(head, rows, chosen, temperature, suppressed_ids))
    if not parts:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(parts)


def _chunk_logprobs(
    head: torch.nn.Module, rows: torch.Tensor, chosen: torch.Tensor, temperature: float, suppressed: torch.Tensor
) -> torch.Tensor:
    logits = head(rows).float()
    if temperature != 1.0:
        logits = logits / temperature
    if suppressed.numel():
        logits = logits.index_fill(-1, suppressed, float("-inf"))
    logprobs = logits.gather(-1, chosen.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    if suppressed.numel():  # -inf for a suppressed target would poison the loss; nothing samples one
        logprobs = logprobs.masked_fill(torch.isin(chosen, suppressed), 0.0)
    return logprobs


def response_logprobs(
    model,
    batch: dict[str, torch.Tensor],
    temperature: float = 1.0,
    suppressed: Sequence[int] = (),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """log p of every response token of a `sequences.collate` batch at `temperature`: a
    flat (N,) tensor, row by row in the batch's order, each row's tokens in order (N is
    `batch["response_mask"].sum()`)."""
    hidden = decoder_hidden_states(model, batch)
    predicts_response = batch["response_mask"][:, 1:]  # position t predicts token t + 1
    rows = hidden[:, :-1][predicts_response]
    targets = batch["input_ids"][:, 1:][predicts_response]
    return selective_logprobs(model.get_output_embeddings(), rows, targets, temperature, suppressed, chunk_size)


class ResponseLogprobs(torch.nn.Module):
    """The model with `response_logprobs` as its forward, so that DDP and DeepSpeed wrap the
    whole computation (their gradient hooks need the forward to go through them)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: dict[str, torch.Tensor], temperature: float = 1.0, suppressed: Sequence[int] = ()
    ) -> torch.Tensor:
        return response_logprobs(self.model, batch, temperature, suppressed)

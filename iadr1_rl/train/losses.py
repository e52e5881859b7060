"""The losses: PA-SFT cross-entropy on response tokens, and SC-GRPO's PPO-clipped
objective with a k3 KL penalty to the reference, both token-mean over a step.

Both take flat per-token tensors (a micro-batch's response tokens, as
`logprobs.response_logprobs` returns them) and a `normaliser`, the number of response
tokens in the whole update: a loss is its micro-batch's sum over that count, so the
gradients of an update's micro-batches add up to the token mean over the whole update,
however it was split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sft_loss(logprobs: torch.Tensor, normaliser: float | None = None) -> torch.Tensor:
    """Negative log-likelihood of the response tokens: their sum over `normaliser` (default:
    their count, the token mean).

    >>> round(sft_loss(torch.log(torch.tensor([0.5, 0.25]))).item(), 4)
    1.0397
    """
    return -logprobs.sum() / _count(logprobs, normaliser)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π‖π_ref): exp(r) − r − 1 with r = log π_ref − log π (≥ 0)."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1


@dataclass(frozen=True)
class PPOSettings:
    """The clipped objective's settings: clip range ε, KL weight β, and the sampling
    temperature every log-prob of the ratio and the KL is taken at."""

    clip: float = 0.2
    beta: float = 0.04
    temperature: float = 1.0


# What `grpo_loss` sums over its tokens, for the update's token means.
GRPO_SUMS = ("policy_loss", "kl", "clipped", "ratio", "logprob")


@dataclass
class GRPOLoss:
    loss: torch.Tensor  # this micro-batch's share of the update's token-mean loss
    sums: dict[str, float]  # GRPO_SUMS over this micro-batch's tokens
    tokens: int


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float = 0.2,
    beta: float = 0.04,
    normaliser: float | None = None,
) -> GRPOLoss:
    """-min(ρA, clip(ρ, 1±ε)A) + β·k3 per token, summed over `normaliser` (default: the
    token count). Every argument is per token (N,): the advantage repeated over its
    sequence's tokens."""
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages.to(logprobs.dtype)
    policy_term = -torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - clip, 1 + clip) * advantage)
    kl = k3_kl(logprobs, ref_logprobs)
    loss = (policy_term + beta * kl).sum() / _count(logprobs, normaliser)
    with torch.no_grad():
        clipped = ((ratio < 1 - clip) | (ratio > 1 + clip)).float()
        sums = {
            "policy_loss": policy_term.sum().item(),
            "kl": kl.sum().item(),
            "clipped": clipped.sum().item(),
            "ratio": ratio.sum().item(),
            "logprob": logprobs.sum().item(),
        }
    return GRPOLoss(loss, sums, logprobs.numel())


def _count(values: torch.Tensor, normaliser: float | None) -> float:
    return float(normaliser if normaliser is not None else max(1, values.numel()))

"""The losses: PA-SFT cross-entropy on response tokens, and SC-GRPO's PPO-clipped
objective with a k3 KL penalty to the reference, both token-mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked tokens of the whole batch (token-mean, not sample-mean)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the response tokens, token-mean.

    >>> round(sft_loss(torch.log(torch.tensor([[0.5, 0.25]])), torch.tensor([[True, True]])).item(), 4)
    1.0397
    """
    return -masked_mean(logprobs, mask)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π‖π_ref): exp(r) − r − 1 with r = log π_ref − log π (≥ 0)."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1


@dataclass
class GRPOLoss:
    loss: torch.Tensor
    policy_loss: float
    kl: float
    clip_fraction: float
    ratio_mean: float


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    beta: float = 0.04,
) -> GRPOLoss:
    """-min(ρA, clip(ρ, 1±ε)A) + β·k3, token-mean over response tokens.

    `advantages` is per sequence (B,) and broadcast over its tokens.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages.unsqueeze(-1).to(logprobs.dtype)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantage
    policy_term = -torch.minimum(unclipped, clipped)
    kl = k3_kl(logprobs, ref_logprobs)
    loss = masked_mean(policy_term + beta * kl, mask)
    with torch.no_grad():
        clipped_tokens = ((ratio < 1 - clip) | (ratio > 1 + clip)) & mask.bool()
        return GRPOLoss(
            loss=loss,
            policy_loss=masked_mean(policy_term, mask).item(),
            kl=masked_mean(kl, mask).item(),
            clip_fraction=(clipped_tokens.sum() / mask.sum().clamp(min=1)).item(),
            ratio_mean=masked_mean(ratio, mask).item(),
        )

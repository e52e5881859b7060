"""SFT and GRPO losses against hand-computed values."""

import math

import pytest
import torch

from iadr1_rl.train.losses import grpo_loss, k3_kl, masked_mean, sft_loss


def test_sft_loss_is_token_mean_over_response_tokens():
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.5, 0.9, 0.9]]))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.5)) / 3  # three tokens, not two sequences
    assert sft_loss(logprobs, mask).item() == pytest.approx(expected)


def test_k3_hand_computed():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    r = math.log(0.25 / 0.5)
    assert k3_kl(logp, ref).item() == pytest.approx(math.exp(r) - r - 1)  # 0.1931
    assert k3_kl(logp, logp).item() == 0.0
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_grpo_on_policy_value_and_gradient():
    logprobs = torch.log(torch.tensor([[0.5, 0.4]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.25, 0.4]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    result = grpo_loss(logprobs, logprobs.detach(), ref, torch.tensor([2.0]), mask, clip=0.2, beta=0.04)
    r = math.log(0.25 / 0.5)
    expected = (-2 + 0.04 * (math.exp(r) - r - 1) + -2 + 0.0) / 2
    assert result.loss.item() == pytest.approx(expected)
    assert result.kl == pytest.approx((math.exp(r) - r - 1) / 2)
    assert result.clip_fraction == 0.0 and result.ratio_mean == pytest.approx(1.0)
    result.loss.backward()
    # d/dlogp of -ratio*A is -A per token / 2 tokens; the KL term adds β(1 - exp(r))/2 on token 0.
    assert logprobs.grad[0, 0].item() == pytest.approx((-2 + 0.04 * (1 - math.exp(r))) / 2)
    assert logprobs.grad[0, 1].item() == pytest.approx(-2 / 2)


def test_grpo_clipping():
    old = torch.zeros(2, 1)
    logprobs = torch.log(torch.tensor([[1.5], [0.5]]))  # ratios 1.5 and 0.5
    mask = torch.ones(2, 1, dtype=torch.bool)
    result = grpo_loss(logprobs, old, logprobs, torch.tensor([1.0, -1.0]), mask, clip=0.2, beta=0.0)
    # A=+1, ratio 1.5: min(1.5, 1.2) = 1.2 → -1.2. A=-1, ratio 0.5: min(-0.5, -0.8) = -0.8 → +0.8.
    assert result.loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert result.clip_fraction == 1.0


def test_masked_mean_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(values, torch.tensor([[True, True, False]])).item() == 1.5
    assert masked_mean(values, torch.zeros(1, 3, dtype=torch.bool)).item() == 0.0

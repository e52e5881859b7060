"""SFT and GRPO losses against hand-computed values; split into micro-batches, they add up
to the whole update's token mean."""

import math

import pytest
import torch

from iadr1_rl.train.losses import grpo_loss, k3_kl, sft_loss


def test_sft_loss_is_token_mean_over_response_tokens():
    # Three tokens of two sequences: the mean is over the tokens, not the sequences.
    logprobs = torch.log(torch.tensor([0.5, 0.25, 0.5]))
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.5)) / 3
    assert sft_loss(logprobs).item() == pytest.approx(expected)
    # Split into micro-batches with the step's token count as normaliser, the parts add up.
    parts = sft_loss(logprobs[:2], normaliser=3) + sft_loss(logprobs[2:], normaliser=3)
    assert parts.item() == pytest.approx(expected)


def test_k3_hand_computed():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    r = math.log(0.25 / 0.5)
    assert k3_kl(logp, ref).item() == pytest.approx(math.exp(r) - r - 1)  # 0.1931
    assert k3_kl(logp, logp).item() == 0.0
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_grpo_on_policy_value_and_gradient():
    logprobs = torch.log(torch.tensor([0.5, 0.4])).requires_grad_(True)
    ref = torch.log(torch.tensor([0.25, 0.4]))
    result = grpo_loss(logprobs, logprobs.detach(), ref, torch.tensor([2.0, 2.0]), clip=0.2, beta=0.04)
    r = math.log(0.25 / 0.5)
    expected = (-2 + 0.04 * (math.exp(r) - r - 1) + -2 + 0.0) / 2
    assert result.loss.item() == pytest.approx(expected)
    assert result.sums["kl"] / result.tokens == pytest.approx((math.exp(r) - r - 1) / 2)
    assert result.sums["clipped"] == 0.0 and result.sums["ratio"] / result.tokens == pytest.approx(1.0)
    result.loss.backward()
    # d/dlogp of -ratio*A is -A per token / 2 tokens; the KL term adds β(1 - exp(r))/2 on token 0.
    assert logprobs.grad[0].item() == pytest.approx((-2 + 0.04 * (1 - math.exp(r))) / 2)
    assert logprobs.grad[1].item() == pytest.approx(-2 / 2)


def test_grpo_clipping():
    old = torch.zeros(2)
    logprobs = torch.log(torch.tensor([1.5, 0.5]))  # ratios 1.5 and 0.5
    result = grpo_loss(logprobs, old, logprobs, torch.tensor([1.0, -1.0]), clip=0.2, beta=0.0)
    # A=+1, ratio 1.5: min(1.5, 1.2) = 1.2 → -1.2. A=-1, ratio 0.5: min(-0.5, -0.8) = -0.8 → +0.8.
    assert result.loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert result.sums["clipped"] == 2.0


def test_grpo_micro_batches_add_up_to_the_whole():
    torch.manual_seed(0)
    logprobs = torch.randn(10).requires_grad_(True)
    old, ref, advantages = torch.randn(10), torch.randn(10), torch.randn(10)
    whole = grpo_loss(logprobs, old, ref, advantages)
    whole.loss.backward()
    expected_grad, logprobs.grad = logprobs.grad.clone(), None
    parts = [grpo_loss(logprobs[s], old[s], ref[s], advantages[s], normaliser=10) for s in (slice(0, 3), slice(3, 10))]
    sum(p.loss for p in parts).backward()
    assert sum(p.loss.item() for p in parts) == pytest.approx(whole.loss.item(), abs=1e-6)
    assert torch.allclose(logprobs.grad, expected_grad, atol=1e-7)
    for key, value in whole.sums.items():
        assert sum(p.sums[key] for p in parts) == pytest.approx(value, abs=1e-5)

"""Response-only, chunked log-probs equal the straightforward full-vocabulary computation
(values and gradients, float32), on the tiny model and on one with Qwen's 151,936-token
vocabulary; micro-batches by token budget give the one-batch update."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baseline_logprobs import full_vocabulary_logprobs
from iadr1_rl.actors import PolicyActor
from iadr1_rl.data.records import load_records
from iadr1_rl.models.encoding import encode_prompts
from iadr1_rl.models.generation import vision_token_ids
from iadr1_rl.models.loading import load_vlm
from iadr1_rl.train.engine import OptimizerSettings
from iadr1_rl.train.logprobs import response_logprobs
from iadr1_rl.train.losses import PPOSettings
from iadr1_rl.train.micro_batches import TokenBudgetError
from iadr1_rl.train.sequences import GRPOBatch, Sample, collate, target_ids

QWEN_VOCABULARY = 151_936


def samples_for(processor, records) -> list[Sample]:
    prompts = encode_prompts(processor, records, "train")
    return [Sample(p, target_ids(processor.tokenizer, r.response)) for p, r in zip(prompts, records)]


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def check_equal_to_full_vocabulary(model, processor, records, chunk_size):
    model.float().train()
    samples = samples_for(processor, records)
    batch = collate(samples, processor.tokenizer.pad_token_id or 0)
    suppressed = vision_token_ids(model)
    weights = torch.linspace(-1, 1, sum(len(s.response_ids) for s in samples))
    for temperature in (1.0, 0.7):
        model.zero_grad()
        expected = full_vocabulary_logprobs(model, batch, temperature, suppressed)
        (expected * weights).sum().backward()
        expected_grads = gradients(model)
        model.zero_grad()
        got = response_logprobs(model, batch, temperature, suppressed, chunk_size=chunk_size)
        (got * weights).sum().backward()
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()
        got_grads = gradients(model)
        assert got_grads.keys() == expected_grads.keys()
        for name, grad in expected_grads.items():
            assert torch.allclose(got_grads[name], grad, atol=1e-5, rtol=1e-4), name


@pytest.fixture(scope="module")
def records(synthetic_records):
    return load_records(synthetic_records)[:4]


def test_equal_to_full_vocabulary_on_the_tiny_model(tiny_model_dir, records):
    model, processor = load_vlm(tiny_model_dir)
    check_equal_to_full_vocabulary(model, processor, records, chunk_size=7)  # many chunks, one ragged


def test_equal_to_full_vocabulary_with_qwens_vocabulary(tiny_model_dir, records):
    model, processor = load_vlm(tiny_model_dir)
    model.resize_token_embeddings(QWEN_VOCABULARY)
    with torch.no_grad():  # the new rows are not all alike: every row of the softmax matters
        model.get_output_embeddings().weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    assert model.get_output_embeddings().weight.shape[0] == QWEN_VOCABULARY
    check_equal_to_full_vocabulary(model, processor, records[:2], chunk_size=None)


def captured_gradient(policy: PolicyActor, update: GRPOBatch) -> tuple[dict[str, torch.Tensor], dict]:
    """The gradient the optimiser step receives, by parameter, and the step's metrics."""
    seen = {}
    step = policy.engine.step

    def record_then_step():
        seen["grad"] = gradients(policy.model)
        return step()

    policy.engine.step = record_then_step
    metrics = policy.grpo_step(update, PPOSettings(clip=0.2, beta=0.04, temperature=0.9))
    return seen["grad"], metrics


def test_micro_batches_by_token_budget_give_the_one_batch_update(tiny_model_dir, records):
    settings = OptimizerSettings(lr=1e-3, total_steps=10)
    whole = PolicyActor(str(tiny_model_dir), optimizer=settings, train_tokens=100_000)
    samples = samples_for(whole.processor, records)
    longest = max(len(s.prompt) + len(s.response_ids) for s in samples)
    split = PolicyActor(str(tiny_model_dir), optimizer=settings, train_tokens=longest)  # one sample per forward
    ref = whole.response_logprobs(samples, 0.9)
    old = [[x - 0.05 for x in row] for row in ref]  # off-policy: the ratio is not 1
    update = GRPOBatch(samples, [1.0, -0.5, 0.25, -0.75], ref, old)
    grad_whole, metrics_whole = captured_gradient(whole, update)
    grad_split, metrics_split = captured_gradient(split, update)
    assert metrics_whole["micro_batches"] == 1 and metrics_split["micro_batches"] == len(samples)
    assert grad_split.keys() == grad_whole.keys()
    for name, grad in grad_whole.items():
        assert torch.allclose(grad_split[name], grad, atol=1e-6, rtol=1e-5), name
    for key in ("loss", "kl", "clip_fraction", "ratio", "grad_norm"):
        assert metrics_split[key] == pytest.approx(metrics_whole[key], rel=1e-5, abs=1e-7), key
    # The weights Adam moves: its first step is about lr × sign(gradient), so where the
    # gradient is float noise (|g| < 1e-6) rounding may flip it; everywhere else they agree.
    split_weights = dict(split.model.named_parameters())
    for name, weight in whole.model.named_parameters():
        if name in grad_whole:
            signal = grad_whole[name].abs() > 1e-6
            assert torch.allclose(split_weights[name][signal], weight[signal], atol=1e-6), name


def test_a_sample_longer_than_the_budget_is_refused_naming_the_key(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), train_tokens=8)
    samples = samples_for(policy.processor, records[:2])
    with pytest.raises(TokenBudgetError, match=r"memory\.train_tokens of 8 tokens"):
        policy.grpo_step(GRPOBatch(samples, [1.0, -1.0], [[0.0] * len(s.response_ids) for s in samples]), PPOSettings())

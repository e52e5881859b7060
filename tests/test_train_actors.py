"""The actors without Ray: SFT updates the policy, weights sync to rollout workers,
rollouts are well formed and reproducible for a seed."""

import pytest
import torch

from iadr1_rl.actors import PolicyActor, ReferenceActor, RolloutActor
from iadr1_rl.data.records import load_records
from iadr1_rl.models.generation import SamplingConfig
from iadr1_rl.train.sequences import Sample, target_ids


@pytest.fixture(scope="module")
def records(synthetic_records):
    return load_records(synthetic_records)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sft_step_updates_and_weights_sync(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), lr=1e-2, total_steps=10)
    rollout = RolloutActor(str(tiny_model_dir))
    before = params(policy.model)
    metrics = policy.sft_step(records[:8], micro_batches=2)
    assert {"loss", "lr", "grad_norm", "tokens"} <= set(metrics) and metrics["loss"] > 0
    after = params(policy.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The rollout worker still has the initial weights until it is sent the new ones.
    assert all(torch.equal(rollout.model.state_dict()[k], before[k]) for k in before)
    assert rollout.load_weights(policy.state_dict()) == 1
    assert all(torch.equal(rollout.model.state_dict()[k], after[k]) for k in after)


def test_loss_decreases_on_a_repeated_batch(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), lr=5e-3, total_steps=100)
    losses = [policy.sft_step(records[:8])["loss"] for _ in range(15)]
    assert losses[-1] < losses[0] * 0.8


def test_rollouts_are_groups_and_seeded(tiny_model_dir, records):
    rollout = RolloutActor(str(tiny_model_dir))
    sampling = SamplingConfig(max_new_tokens=6, do_sample=True)
    first = rollout.generate(records[:3], 4, sampling, seed=7)
    again = rollout.generate(records[:3], 4, sampling, seed=7)
    assert [r.prompt_index for r in first] == [0] * 4 + [1] * 4 + [2] * 4
    assert all(len(r.token_ids) <= 6 for r in first)
    assert [r.token_ids for r in first] == [r.token_ids for r in again]  # resumable sampling


def test_grpo_step_and_reference_logprobs(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), lr=1e-3, total_steps=10)
    reference = ReferenceActor(str(tiny_model_dir))
    tokenizer = policy.processor.tokenizer
    samples = [Sample(r, target_ids(tokenizer, r.response)) for r in records[:4]]
    ref = reference.response_logprobs(samples)
    own = policy.response_logprobs(samples)
    assert [len(x) for x in ref] == [len(s.response_ids) for s in samples]
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    assert flat(ref) == pytest.approx(flat(own), abs=1e-5)  # same weights before any update
    metrics = policy.grpo_step(samples, [1.0, -1.0, 0.5, -0.5], None, ref, clip=0.2, beta=0.04)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6) and metrics["ratio"] == pytest.approx(1.0)
    assert flat(policy.response_logprobs(samples)) != pytest.approx(flat(own), abs=1e-5)  # the update moved it
    assert not any(p.requires_grad for p in reference.model.parameters())

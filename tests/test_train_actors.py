"""The actors without Ray: SFT updates the policy, weights sync to rollout workers,
rollouts are well formed and reproducible for a seed."""

import pytest
import torch

from iadr1_rl.actors import PolicyActor, ReferenceActor, RolloutActor
from iadr1_rl.data.records import load_records
from iadr1_rl.models.encoding import encode_prompts
from iadr1_rl.models.generation import SamplingConfig
from iadr1_rl.rollout import sample_seeds
from iadr1_rl.train.engine import OptimizerSettings
from iadr1_rl.train.losses import PPOSettings
from iadr1_rl.train.sequences import GRPOBatch, Sample, target_ids


@pytest.fixture(scope="module")
def records(synthetic_records):
    return load_records(synthetic_records)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sft_step_updates_and_weights_sync(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), optimizer=OptimizerSettings(lr=1e-2, total_steps=10))
    rollout = RolloutActor(str(tiny_model_dir))
    before = params(policy.model)
    metrics = policy.sft_step(records[:8], micro_batches=2)
    assert {"loss", "lr", "grad_norm", "tokens"} <= set(metrics) and metrics["loss"] > 0
    after = params(policy.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The rollout worker still has the initial weights until it is sent the new ones.
    engine = rollout.engine.model
    assert all(torch.equal(engine.state_dict()[k], before[k]) for k in before)
    count = policy.weight_buckets(bucket_bytes=200_000)  # several buckets
    assert count > 2
    held = [rollout.load_weights(policy.weight_bucket(i, version=1)) for i in range(count)]
    assert held == [None] * (count - 1) + [1]  # it confirms the sync after the last bucket only
    assert all(torch.equal(engine.state_dict()[k], after[k]) for k in after)


def test_loss_decreases_on_a_repeated_batch(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), optimizer=OptimizerSettings(lr=5e-3, total_steps=100))
    losses = [policy.sft_step(records[:8])["loss"] for _ in range(15)]
    assert losses[-1] < losses[0] * 0.8


def test_rollouts_are_groups_and_seeded(tiny_model_dir, records):
    rollout = RolloutActor(str(tiny_model_dir))
    prompts = encode_prompts(rollout.engine.processor, records[:3], "train")
    sampling = SamplingConfig(max_new_tokens=6, do_sample=True)
    first = rollout.generate(prompts, sampling, sample_seeds(7, 0, range(3), 4))
    again = rollout.generate(prompts, sampling, sample_seeds(7, 0, range(3), 4))
    assert [len(group) for group in first] == [4, 4, 4]  # one group of G per prompt, in order
    assert all(len(r.token_ids) <= 6 for group in first for r in group)
    eos = rollout.engine.model.generation_config.eos_token_id
    for completion in (c for group in first for c in group):  # stopped at the end of turn, or cut at the length
        stopped = completion.token_ids[-1] == eos and eos not in completion.token_ids[:-1]
        assert completion.finish_reason == ("stop" if stopped else "length")
        assert stopped or len(completion.token_ids) == 6
        assert len(completion.logprobs) == len(completion.token_ids)  # each drawn token's log-prob
    assert [[r.token_ids for r in g] for g in first] == [[r.token_ids for r in g] for g in again]  # resumable


def test_a_completion_depends_on_its_seed_alone(tiny_model_dir, records):
    """Every (prompt, sample) pair draws its own stream: the same prompt twice in a batch
    gets different completions, and a pair's completion is the same whatever else the batch
    holds (so the number of rollout workers does not change what a run draws)."""
    rollout = RolloutActor(str(tiny_model_dir))
    prompt = encode_prompts(rollout.engine.processor, records[:1], "train")[0]
    sampling = SamplingConfig(max_new_tokens=12, do_sample=True, temperature=1.5)
    seeds = sample_seeds(3, 5, range(2), 4)
    twice = rollout.generate([prompt, prompt], sampling, seeds)
    drawn = [tuple(c.token_ids) for group in twice for c in group]
    assert len(set(drawn)) == len(drawn)  # eight different completions of one prompt
    alone = rollout.generate([prompt], sampling, seeds[1:])  # the second prompt's pairs, without the first
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in twice[1]]


def test_seeds_are_a_function_of_their_pair_and_shared_with_no_other():
    seeds = [s for step in range(50) for group in sample_seeds(0, step, range(16), 8) for s in group]
    assert len(set(seeds)) == len(seeds)  # 6,400 pairs, 6,400 seeds
    assert sample_seeds(0, 3, [5], 2) == [sample_seeds(0, 3, range(8), 2)[5]]  # by place, not by batch
    assert sample_seeds(1, 3, [5], 2) != sample_seeds(0, 3, [5], 2)  # the run's seed


def samples_of(actor, chosen):
    tokenizer = actor.processor.tokenizer
    prompts = encode_prompts(actor.processor, chosen, "train")
    return [Sample(p, target_ids(tokenizer, r.response)) for p, r in zip(prompts, chosen)]


def test_grpo_step_and_reference_logprobs(tiny_model_dir, records):
    policy = PolicyActor(str(tiny_model_dir), optimizer=OptimizerSettings(lr=1e-3, total_steps=10))
    reference = ReferenceActor(str(tiny_model_dir))
    samples = samples_of(policy, records[:4])
    ref = reference.response_logprobs(samples)
    own = policy.response_logprobs(samples)
    assert [len(x) for x in ref] == [len(s.response_ids) for s in samples]
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    assert flat(ref) == pytest.approx(flat(own), abs=1e-5)  # same weights before any update
    metrics = policy.grpo_step(GRPOBatch(samples, [1.0, -1.0, 0.5, -0.5], ref), PPOSettings(clip=0.2, beta=0.04))
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6) and metrics["ratio"] == pytest.approx(1.0)
    assert flat(policy.response_logprobs(samples)) != pytest.approx(flat(own), abs=1e-5)  # the update moved it
    assert not any(p.requires_grad for p in reference.model.parameters())


@pytest.mark.parametrize("temperature", [0.6, 1.7])
def test_logprobs_are_those_of_the_sampling_policy(tiny_model_dir, records, temperature):
    """The importance ratio of the first update compares the policy with the one that
    sampled: at temperature T ≠ 1 both must be taken at T (as the engines sample and
    OpenRLHF computes them), or the ratio and the KL are those of another policy."""
    policy = PolicyActor(str(tiny_model_dir), optimizer=OptimizerSettings(lr=1e-3, total_steps=10))
    rollout = RolloutActor(str(tiny_model_dir))
    prompts = encode_prompts(policy.processor, records[:3], "train")
    sampling = SamplingConfig(8, do_sample=True, temperature=temperature)
    completions = [group[0] for group in rollout.generate(prompts, sampling, sample_seeds(0, 0, range(3), 1))]
    samples = [Sample(p, c.token_ids) for p, c in zip(prompts, completions)]
    sampled = torch.tensor([x for c in completions for x in c.logprobs])  # what the sampler drew from
    at_t = torch.tensor([x for row in policy.response_logprobs(samples, temperature) for x in row])
    at_one = torch.tensor([x for row in policy.response_logprobs(samples) for x in row])
    assert torch.exp(at_t - sampled).mean().item() == pytest.approx(1.0, abs=1e-4)  # the ratio is 1
    assert torch.allclose(at_t, sampled, atol=1e-4)
    assert not torch.allclose(at_one, sampled, atol=1e-2)  # at T = 1 it would not be
    # The PPO step takes its log-probs at T too: with the sampler's as old, its ratio is 1.
    old = [c.logprobs for c in completions]
    metrics = policy.grpo_step(GRPOBatch(samples, [1.0, -1.0, 0.5], old, old), PPOSettings(temperature=temperature))
    assert metrics["ratio"] == pytest.approx(1.0, abs=1e-4) and metrics["clip_fraction"] == 0.0

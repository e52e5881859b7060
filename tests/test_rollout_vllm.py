"""The vLLM rollout engine on CPU (tiny Qwen2-VL, float32), in .venv-vllm (`make test-vllm`):
its sampling log-probs equal the policy's forward at the same weights, and again after a
policy step and a bucketed weight sync; SC-GRPO with rollout.engine=vllm on two ZeRO-3
ranks trains, logs a near-zero rollout_logprob_gap and time_sync, resumes after SIGKILL,
and goes on with a new engine after its engine's process is killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iadr1_rl.rollout import sample_seeds

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def records(synthetic_records):
    from iadr1_rl.data.records import load_records

    return load_records(synthetic_records)[:3]


@pytest.fixture(scope="module")
def formatted_model(wide_head_formatted_model) -> Path:
    return wide_head_formatted_model


@pytest.fixture(scope="module")
def engine(formatted_model):
    """One in-process vLLM engine for the module (it takes seconds to start)."""
    from iadr1_rl.rollout.vllm import VLLMEngine

    return VLLMEngine(str(formatted_model), dtype="float32", max_model_len=512, kv_cache_gib=0.25)


def policy_logprobs(policy, prompts, completions, temperature):
    from iadr1_rl.train.sequences import Sample

    samples = [Sample(p, c.token_ids) for p, group in zip(prompts, completions) for c in group]
    return policy.response_logprobs(samples, temperature)


def gap(completions, recomputed) -> float:
    engine = torch.tensor([x for group in completions for c in group for x in c.logprobs])
    policy = torch.tensor([x for row in recomputed for x in row])
    assert engine.shape == policy.shape
    return (engine - policy).abs().max().item()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_equal_the_policys_forward(engine, formatted_model, records, temperature):
    from iadr1_rl.actors import PolicyActor
    from iadr1_rl.models.encoding import encode_prompts
    from iadr1_rl.models.generation import SamplingConfig

    policy = PolicyActor(str(formatted_model))
    prompts = encode_prompts(policy.processor, records, "train")
    sampling = SamplingConfig(max_new_tokens=24, do_sample=True, temperature=temperature)
    completions = engine.generate(prompts, sampling, sample_seeds(5, 0, range(3), 4))
    assert [len(g) for g in completions] == [4, 4, 4]
    for completion in (c for g in completions for c in g):
        assert completion.logprobs is not None and len(completion.logprobs) == len(completion.token_ids)
        stopped = completion.token_ids[-1] == policy.model.generation_config.eos_token_id
        assert completion.finish_reason == ("stop" if stopped else "length")
        assert stopped or len(completion.token_ids) == 24
        assert not set(completion.token_ids) & set(policy.suppressed)  # never an image placeholder
    assert gap(completions, policy_logprobs(policy, prompts, completions, temperature)) <= 1e-4
    again = engine.generate(prompts, sampling, sample_seeds(5, 0, range(3), 4))
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in completions]


def test_identical_prompts_in_one_batch_draw_different_completions(engine, formatted_model, records):
    """Each (prompt, sample) pair has its own seed: with one seed per prompt, vLLM seeded
    sample j + 1 of a prompt as sample j of the next, and two identical prompts got three
    identical completions of four. The same seeds give the same completions again."""
    from iadr1_rl.models.encoding import encode_prompts
    from iadr1_rl.models.generation import SamplingConfig
    from iadr1_rl.models.loading import load_vlm

    _, processor = load_vlm(formatted_model)
    prompt = encode_prompts(processor, records[:1], "train")[0]
    sampling = SamplingConfig(max_new_tokens=16, do_sample=True, temperature=1.5)
    seeds = sample_seeds(9, 2, range(2), 4)
    groups = engine.generate([prompt, prompt], sampling, seeds)
    drawn = [tuple(c.token_ids) for g in groups for c in g]
    assert len(set(drawn)) == len(drawn), drawn
    again = engine.generate([prompt, prompt], sampling, seeds)
    assert [tuple(c.token_ids) for g in again for c in g] == drawn
    alone = engine.generate([prompt], sampling, seeds[1:])  # a pair's draws do not depend on the batch
    assert [tuple(c.token_ids) for c in alone[0]] == drawn[4:]


def test_after_a_policy_step_and_a_sync_they_equal_the_new_policys(engine, formatted_model, records):
    from iadr1_rl.actors import PolicyActor
    from iadr1_rl.models.encoding import encode_prompts
    from iadr1_rl.models.generation import SamplingConfig
    from iadr1_rl.rollout.weight_sync import WeightReceiver
    from iadr1_rl.train.engine import OptimizerSettings

    policy = PolicyActor(str(formatted_model), optimizer=OptimizerSettings(lr=5e-3))
    prompts = encode_prompts(policy.processor, records, "train")
    sampling = SamplingConfig(max_new_tokens=16, do_sample=True)
    before = engine.generate(prompts, sampling, sample_seeds(1, 0, range(3), 2))
    policy.sft_step(records)
    stale = policy_logprobs(policy, prompts, before, 1.0)
    assert gap(before, stale) > 1e-2  # the step moved the policy away from the engine
    receiver = WeightReceiver()
    count = policy.weight_buckets(bucket_bytes=300_000)
    held = [receiver.take(policy.weight_bucket(i, 1), engine.load_weights, engine.finish_sync) for i in range(count)]
    assert held[-1] == 1 and count > 1
    after = engine.generate(prompts, sampling, sample_seeds(1, 0, range(3), 2))
    assert gap(after, policy_logprobs(policy, prompts, after, 1.0)) <= 1e-4


def grpo_overrides(run: Path, model: Path, records: Path) -> list[str]:
    return [
        f"run_dir={run}",
        f"model.path={model}",
        f"grpo.init={model}",
        f"data.train={records}",
        f"grpo.output={run / 'grpo'}",
        "grpo.steps=3",
        "grpo.prompts_per_step=3",
        "grpo.group_size=3",
        "grpo.max_new_tokens=24",
        "grpo.lr=1e-3",
        "checkpoint.every=1",
        "resources.torch_threads=1",
        "resources.policy.num_cpus=0.5",
        "resources.reference.num_cpus=0.5",
        "resources.rollout.num_cpus=0.5",
        "rollout.engine=vllm",
        "rollout.kv_cache_gib=0.25",
        "rollout.max_model_len=512",
        "data.shots=1",  # as the formatted model learned them: a reference, then the query
    ]


def test_sc_grpo_on_two_zero3_ranks_resumes_after_sigkill_and_syncs_a_new_engine(
    tmp_path, formatted_model, synthetic_records, start_recipe
):
    """The policy as two DeepSpeed ZeRO-3 ranks (gloo): every bucket of every sync is gathered
    from the shards and sent by rank 0. The recipe is killed whole (kill -9) after its step-1
    checkpoint and resumed; the resumed run's engine process is killed in step 2 and a new
    engine, started in its place, takes its first sync (the step redone with the same seeds).
    The engine's log-probs stay the policy's every step."""
    ranks = ["grpo.strategy=deepspeed", "grpo.zero_stage=3", "grpo.world_size=2"]
    base = [*grpo_overrides(tmp_path, formatted_model, synthetic_records), *ranks, "--no-eval", "--no-progress"]
    killed = start_recipe("sc_grpo.py", *base)
    killed.wait_until((tmp_path / "grpo" / "checkpoints" / "step_000001").is_dir, "the step-1 checkpoint", 600)
    killed.kill()
    assert not (tmp_path / "grpo" / "final").exists()

    resumed = start_recipe("sc_grpo.py", *base, "--resume")
    resumed.wait_until(lambda: resumed.says("started rollout"), "the actors' start", 600)
    resumed.actor_process("RolloutActor").kill()  # during step 2
    returncode = resumed.finish(900)
    assert returncode == 0, resumed.stderr()[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert row["rollout_logprob_gap"] <= 1e-3, row  # the engine samples from the policy being trained
        # The workers sampled with the weights of the sync before (counted in this process).
        assert row["time_sync"] > 0 and 0 <= row["weights_version"] < row["step"]
    events = [json.loads(line) for line in (tmp_path / "grpo" / "events.jsonl").read_text().splitlines()]
    assert [(e["event"], e["lost"], e["step"]) for e in events] == [("actor_restart", "rollout worker 0", 2)]
    assert (tmp_path / "grpo" / "final" / "model.safetensors").is_file()


def test_the_evaluation_backend_generates_greedily_as_hf_does(engine, formatted_model, records):
    """`iadr1-eval run --backend vllm` is the same engine, greedy: the texts HF's greedy
    `generate` gives (float32: the same logits, so the same arg-maxes)."""
    from iadr1_rl.eval.vllm_backend import VLLMGenerator
    from iadr1_rl.models.generation import SamplingConfig, generate_texts
    from iadr1_rl.models.loading import load_vlm
    from iadr1_rl.rollout.weight_sync import WeightReceiver, WeightSender

    model, processor = load_vlm(formatted_model)
    sender, receiver = WeightSender(model), WeightReceiver()  # the shared engine may hold other weights
    for index in range(sender.count):
        receiver.take(sender.bucket(index, 100), engine.load_weights, engine.finish_sync)
    sampling = SamplingConfig(max_new_tokens=16)
    texts = VLLMGenerator(formatted_model, "train", sampling, engine=engine).generate(records)
    assert texts == generate_texts(model, processor, records, "train", sampling)


def test_a_step_larger_than_one_prefill_batch_samples(engine, records, wide_head_formatted_model):
    """More prompt tokens than vLLM prefills in one batch (4,096 by default): with chunked
    prefill on CPU, vLLM rewound per-request generators CPU torch cannot rewind ("CPU
    Generator does not use offset"), which the demo's 8 prompts × G 8 hit."""
    from iadr1_rl.models.encoding import encode_prompts
    from iadr1_rl.models.generation import SamplingConfig
    from iadr1_rl.models.loading import load_vlm

    _, processor = load_vlm(wide_head_formatted_model)
    prompts = encode_prompts(processor, records, "train")
    group = 4096 // (len(prompts) * len(prompts[0])) + 2
    seeds = sample_seeds(3, 0, range(len(prompts)), group)
    groups = engine.generate(prompts, SamplingConfig(max_new_tokens=4, do_sample=True), seeds)
    assert [len(g) for g in groups] == [group] * len(prompts)


def test_the_step_benchmark_runs_both_engines_and_the_plan_is_within_a_quarter_of_their_peaks(tmp_path):
    """`bench_step.py --engine hf,vllm`: the same steps with each engine, each phase timed,
    vLLM's phases over HF's printed; and the memory plan against what it measured (the plan's
    check on CPU, here so that one benchmark run serves both). At the tiny shape with Qwen's
    151,936-token vocabulary, so that what the plan models outweighs the process's noise (at
    the 1,024-token tiny shape every actor holds under 0.2 GiB, and a few hundredths of
    allocator arenas move it by a quarter), two steps (AdamW's moments exist from the first
    update on): each actor's peak (resident memory above the process's own) against the plan."""
    shape = ["--shape", "tiny_qwen_vocab", "--steps", "2", "--prompts", "8", "--group", "4", "--new-tokens", "16"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--engine", "hf,vllm", *shape]
        + ["--threads", "1", "--out", str(tmp_path), "--json", str(tmp_path / "result.json")],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    hf, vllm = json.loads((tmp_path / "result.json").read_text())["steps"]
    assert (hf["engine"], vllm["engine"]) == ("hf", "vllm")
    for result in (hf, vllm):
        assert result["phases_s"]["time_rollout"] > 0 and result["phases_s"]["time_sync"] > 0
        assert result["phases_s"]["time_train"] > 0
        assert result["peak_gib"]["rollout"] > 0 and result["peak_gib"]["policy"] > 0
        assert set(result["plan_over_peak"]) == {"policy", "reference", "rollout"}
        for actor, ratio in result["plan_over_peak"].items():
            assert 0.75 <= ratio <= 1.25, (
                result["engine"],
                actor,
                result["peak_gib"][actor],
                result["plan_gib"][actor],
            )
    assert "vllm / hf" in done.stdout and "rollout" in done.stdout.split("vllm / hf")[1]

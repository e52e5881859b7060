"""The memory plan: each actor's peak from the model's config.json alone, printed by the
dry run for every shipped backbone config, a config that cannot fit refused before any
model loads (the estimate against the peaks the step benchmark measures on CPU:
tests/test_rollout_vllm.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import ray

from iadr1_rl.backends.local.grpo import run_grpo
from iadr1_rl.memory.estimates import GIB, ModelShape, Workload, policy_estimate
from iadr1_rl.memory.plan import MemoryPlanError, dry_run, plan_memory
from iadr1_rl.models.backbones import BACKBONES
from iadr1_rl.models.loading import load_vlm
from iadr1_rl.train.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BACKBONE_CONFIGS = sorted(p for p in (ROOT / "recipes" / "configs").glob("*.yaml") if p.stem != "demo")


@pytest.mark.parametrize("path", BACKBONE_CONFIGS, ids=lambda p: p.stem)
def test_the_dry_run_plans_every_shipped_backbone_and_each_fits_its_gpu(path, capsys):
    """PA-SFT and SC-GRPO both fit every backbone's GPUs on the local backend: the 2B/3B
    policies one rank on one 80 GB GPU, the 7B/8B ones ZeRO-3 ranks on an 8-GPU node."""
    config = load_config(path)
    assert config.memory.device_gib == 80  # the GPU the config is written for
    assert dry_run(config, "pa_sft") == 0
    out = capsys.readouterr().out
    assert f"from the published config of {BACKBONES[config.backbone][0]}" in out
    assert "  policy rank 0: " in out and "DOES NOT FIT" not in out and ": fits" in out
    assert dry_run(config, "sc_grpo") == 0
    out, err = capsys.readouterr()
    assert "DOES NOT FIT" not in out and not err, err
    gpus = config.grpo.world_size + config.resources.num_reference_workers + config.resources.num_rollout_workers
    assert out.count(": fits") == gpus and f"GPUs: {gpus}" in out
    if config.grpo.world_size == 1:
        assert "  policy: " in out  # one rank, one GPU


def test_a_config_asked_onto_fewer_gpus_than_it_needs_is_refused_naming_keys(capsys):
    config = load_config(ROOT / "recipes" / "configs" / "qwen2_vl_2b.yaml", ["memory.gpus_per_node=2"])
    assert dry_run(config, "sc_grpo") == 2
    err = capsys.readouterr().err
    assert "the actors need 3 GPUs and a node has 2 (memory.gpus_per_node)" in err
    assert "resources.num_rollout_workers" in err and "fractional resources.<actor>.num_gpus" in err
    with pytest.raises(MemoryPlanError, match="need 3 GPUs"):
        from iadr1_rl.memory.plan import check_memory

        check_memory(config, "sc_grpo")


def test_parameters_are_counted_exactly_from_the_config(tiny_model_dir):
    from transformers import AutoConfig

    model, _ = load_vlm(tiny_model_dir)
    shape = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.vocab == model.get_output_embeddings().weight.shape[0]


def test_checkpointing_budgets_and_sharding_move_the_estimate():
    from iadr1_rl.models.backbones import model_config

    shape = ModelShape.from_config(model_config("nowhere", "qwen2_vl_2b")[0])
    work = dict(dtype="bfloat16", sequence=800, image_tokens=256, response=300, samples=64)
    full = policy_estimate(shape, Workload(**work, tokens_per_forward=16384))
    checkpointed = policy_estimate(shape, Workload(**work, tokens_per_forward=16384, gradient_checkpointing=True))
    smaller = policy_estimate(shape, Workload(**work, tokens_per_forward=4096))
    assert checkpointed.parts["activations"] < full.parts["activations"] / 5
    assert smaller.parts["activations"] < full.parts["activations"] / 3
    # bf16 weights, and beside them float32 master weights, gradients and moments: 2 + 4 + 4 + 8 bytes
    p = shape.parameters
    parts = full.parts
    assert (parts["weights"], parts["master_weights"], parts["gradients"], parts["optimizer"]) == (
        2 * p,
        4 * p,
        4 * p,
        8 * p,
    )
    ddp = policy_estimate(shape, Workload(**work, tokens_per_forward=16384), ddp=True)
    assert ddp.parts["gradients"] == 6 * p  # DDP reduces the bf16 gradients before they are folded in
    assert parts["head_gradient"] == shape.vocab * shape.hidden * 2  # each chunk's backward makes one
    pure = policy_estimate(shape, Workload(**work, tokens_per_forward=16384), precision="none")
    assert (pure.parts["weights"], pure.parts["optimizer"]) == (2 * p, 4 * p) and "master_weights" not in pure.parts
    zero = {"optimizer": 4, "gradients": 4}
    sharded = policy_estimate(shape, Workload(**work, tokens_per_forward=4096), zero, precision="deepspeed")
    assert sharded.parts["optimizer"] == 12 * p / 4 and sharded.parts["gradients"] == 4 * p / 4


@pytest.fixture
def seven_b_folder(tmp_path) -> Path:
    """A model folder with the real config.json of Qwen2.5-VL-7B and no weights."""
    from iadr1_rl.models.backbones import model_config

    config, _ = model_config("nowhere", "qwen2_5_vl_7b")
    folder = tmp_path / "qwen2_5_vl_7b"
    config.save_pretrained(folder)
    return folder


def test_a_model_too_large_for_the_gpu_is_refused_before_anything_loads(seven_b_folder, synthetic_records, tmp_path):
    overrides = [
        f"model.path={seven_b_folder}",
        f"grpo.init={seven_b_folder}",
        f"data.train={synthetic_records}",
        f"run_dir={tmp_path / 'run'}",
        "model.dtype=bfloat16",
        "resources.policy.num_gpus=1",
        "resources.reference.num_gpus=1",
        "resources.rollout.num_gpus=1",
        "memory.device_gib=24",
    ]
    config = load_config(None, overrides)
    with pytest.raises(MemoryPlanError, match=r"GPU 0 would need .* of its 24.0 GiB") as error:
        run_grpo(config, progress=False)
    assert "weights, gradients and optimizer state alone" in str(error.value)
    assert "memory.device_gib" in str(error.value)
    assert not ray.is_initialized()  # refused before Ray started, let alone a model loaded
    assert not (tmp_path / "run" / "sc_grpo").exists()


def test_memory_check_false_warns_and_plans(seven_b_folder, caplog):
    overrides = [f"model.path={seven_b_folder}", "resources.policy.num_gpus=1", "memory.device_gib=24"]
    with pytest.raises(MemoryPlanError):
        from iadr1_rl.memory.plan import check_memory

        check_memory(load_config(None, overrides), "sc_grpo")
    with caplog.at_level(logging.WARNING):
        plan = check_memory(load_config(None, [*overrides, "memory.check=false"]), "sc_grpo")
    assert plan.too_full() and "memory.check is false, starting anyway" in caplog.text


def test_gpu_actors_sharing_a_gpu_are_checked_together(seven_b_folder):
    shares = ["resources.policy.num_gpus=0.4", "resources.reference.num_gpus=0.3", "resources.rollout.num_gpus=0.3"]
    config = load_config(
        None, [f"model.path={seven_b_folder}", "memory.device_gib=141", "model.dtype=bfloat16", *shares]
    )
    plan = plan_memory(config, "sc_grpo")
    assert [d.device for d in plan.devices] == ["GPU 0"]
    assert [a.name for a in plan.devices[0].actors] == ["policy", "reference", "rollout"]
    assert plan.devices[0].needed == pytest.approx(sum(a.total for a in plan.actors))


# The plan against the peaks the step benchmark measures on CPU, with each engine:
# tests/test_rollout_vllm.py (one benchmark run, in the vLLM environment, serves both).


def test_a_vllm_engine_is_planned_at_the_share_it_takes(seven_b_folder):
    gpu = ["model.dtype=bfloat16", "memory.device_gib=80", f"model.path={seven_b_folder}"]
    placed = ["resources.policy.num_gpus=1", "resources.reference.num_gpus=1", "resources.rollout.num_gpus=1"]
    shared = load_config(None, [*gpu, *placed, "rollout.engine=vllm", "rollout.gpu_memory_utilization=0.6"])
    rollout = plan_memory(shared, "sc_grpo").actors[-1]
    assert rollout.parts == {"vllm_share": 0.6 * 80 * GIB}
    sized = load_config(None, [*gpu, *placed, "rollout.engine=vllm", "rollout.kv_cache_gib=3"])
    rollout = plan_memory(sized, "sc_grpo").actors[-1]
    assert rollout.parts["kv_cache"] == 3 * GIB and rollout.parts["weights"] == pytest.approx(8.29e9 * 2, rel=0.01)


def test_the_rollout_keys_reach_the_vllm_engine(tiny_model_dir, synthetic_records):
    from iadr1_rl.backends.local.plan import GRPOPlan

    base = [f"model.path={tiny_model_dir}", f"data.train={synthetic_records}", "rollout.engine=vllm"]
    plan = GRPOPlan.from_config(load_config(None, base))
    assert plan.rollout_engine == "vllm" and plan.rollout_options["images_per_prompt"] == 1
    for key, value in {
        "gpu_memory_utilization": 0.3,
        "kv_cache_gib": 2.0,
        "max_model_len": 2048,
        "enforce_eager": False,
        "sleep": True,
    }.items():
        changed = GRPOPlan.from_config(load_config(None, [*base, f"rollout.{key}={value}"]))
        assert changed.rollout_options[key] == value != plan.rollout_options[key], key
    hf = GRPOPlan.from_config(load_config(None, [*base[:2], "rollout.kv_cache_gib=2"]))
    assert hf.rollout_engine == "hf" and hf.rollout_options == {}  # the HF engine takes none of them
    gap = GRPOPlan.from_config(load_config(None, [*base, "rollout.max_logprob_gap=0.1"]))
    assert gap.max_logprob_gap == 0.1


def test_gpu_actors_are_planned_as_reserved_memory_and_a_pure_bf16_7b_policy_does_not_fit(seven_b_folder):
    """The allocator's reserve on GPU actors (a quarter of what they allocate and free in a
    step), none on CPU ones; a 7B policy without master weights (8 bytes a parameter, the
    LM-head gradient, the reserve) no longer fits an 80 GB GPU as it was planned to."""
    from iadr1_rl.memory.estimates import ALLOCATOR_RESERVE, TRANSIENT_PARTS

    gpu = [f"model.path={seven_b_folder}", "model.dtype=bfloat16", "memory.device_gib=80"]
    config = load_config(None, [*gpu, "resources.policy.num_gpus=1", "model.master_weights=false"])
    plan = plan_memory(config, "sc_grpo")
    policy, reference = plan.actors[0], plan.actors[1]
    transient = sum(policy.parts.get(p, 0.0) for p in TRANSIENT_PARTS)
    assert policy.parts["allocator_reserve"] == pytest.approx(ALLOCATOR_RESERVE * transient)
    assert "allocator_reserve" not in reference.parts and "runtime" in reference.parts  # a CPU actor
    assert plan.too_full() and plan.too_full()[0].actors == [policy]

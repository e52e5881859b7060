"""Data-parallel PA-SFT on CPU (gloo): two policy ranks under DDP or DeepSpeed ZeRO take
the same steps as one process on the whole batch; checkpoints resume on the group."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from iadr1_rl.backends.local.sft import run_sft
from iadr1_rl.train.config import load_config
from iadr1_rl.train.distributed import DistributedSpec, deepspeed_config


def sft_config(run_dir: Path, model_dir: Path, records: Path, *extra: str):
    return load_config(
        None,
        [
            f"run_dir={run_dir}",
            f"model.path={model_dir}",
            f"data.train={records}",
            f"sft.output={run_dir / 'sft'}",
            "sft.batch_size=6",
            "sft.epochs=0.75",
            "sft.lr=5e-3",
            "sft.grad_clip=0.5",
            "checkpoint.every=2",
            "resources.torch_threads=1",
            "resources.policy.num_cpus=0.5",
            *extra,
        ],
    )  # 24 records: 3 steps of 6, a checkpoint after step 2


# Two ranks sum float32 gradients in another order than one process, and Adam's first
# steps (tiny second moments) amplify that rounding: measured up to 2.2e-5. A process
# stepping on half of each batch (what a rank without the all-reduce does) ends 2e-2 away.
SAME_STEPS = 1e-4


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "sft" / "final" / "model.safetensors")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(ray_session, tmp_path_factory, tiny_model_dir, synthetic_records) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("single")
    run_sft(sft_config(run_dir, tiny_model_dir, synthetic_records), progress=False, run_eval=False)
    weights = final_weights(run_dir)
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert max_difference(weights, initial) > 1e-3  # the reference run did train
    return weights


@pytest.mark.parametrize(
    ("strategy", "zero_stage", "offload"),
    [("ddp", 0, False), ("deepspeed", 3, False), ("deepspeed", 1, True)],
)
def test_two_ranks_equal_one_process(
    strategy, zero_stage, offload, one_process, tmp_path, tiny_model_dir, synthetic_records
):
    """The last case is ZeRO-Offload (the Adam state and step on the CPU), which raised in
    DeepSpeed with a client torch optimizer before its documented switch was set; ZeRO-2,
    the default stage, is the resume test's."""
    config = sft_config(
        tmp_path,
        tiny_model_dir,
        synthetic_records,
        f"sft.strategy={strategy}",
        "sft.world_size=2",
        "sft.gradient_accumulation=1",
        f"sft.zero_stage={zero_stage}",
        f"sft.offload_optimizer={str(offload).lower()}",
    )
    summary = run_sft(config, progress=False, run_eval=False)
    assert summary["steps"] == 3
    # Same token-mean gradient, clipping and AdamW step, computed on two shards.
    assert max_difference(final_weights(tmp_path), one_process) < SAME_STEPS
    checkpoint = tmp_path / "sft" / "checkpoints" / "step_000002"
    assert (checkpoint / "model.safetensors").is_file()
    if strategy == "deepspeed":  # each rank's optimizer shard, written together
        assert list((checkpoint / "deepspeed").rglob("*optim_states.pt"))
    else:
        assert (checkpoint / "optimizer.pt").is_file()


def test_deepspeed_resume_and_accumulation(one_process, tmp_path, tiny_model_dir, synthetic_records):
    # ZeRO-2, two micro-batches per rank, and a restart from the step-2 checkpoint: still the same steps.
    extra = ("sft.strategy=deepspeed", "sft.world_size=2", "sft.gradient_accumulation=2", "sft.zero_stage=2")
    config = sft_config(tmp_path, tiny_model_dir, synthetic_records, *extra)
    run_sft(config, progress=False, run_eval=False)
    uninterrupted = final_weights(tmp_path)
    assert max_difference(uninterrupted, one_process) < SAME_STEPS
    (tmp_path / "sft" / "final" / "model.safetensors").unlink()
    summary = run_sft(config, resume=True, progress=False, run_eval=False)
    assert summary["steps"] == 3
    assert max_difference(final_weights(tmp_path), uninterrupted) < 1e-6


def test_bad_group_settings_are_named(ray_session, tmp_path, tiny_model_dir, synthetic_records):
    def run(*extra: str):
        run_sft(sft_config(tmp_path, tiny_model_dir, synthetic_records, *extra), progress=False, run_eval=False)

    with pytest.raises(ValueError, match=r"sft\.strategy: input should be 'none', 'ddp' or 'deepspeed'"):
        run("sft.strategy=fsdp")
    with pytest.raises(ValueError, match="sft: world_size 2 needs strategy ddp or deepspeed"):
        run("sft.world_size=2")
    with pytest.raises(ValueError, match=r"batch_size 6 cannot feed 4 rank\(s\) × 2"):
        run("sft.strategy=ddp", "sft.world_size=4", "sft.gradient_accumulation=2")
    with pytest.raises(RuntimeError, match=r"impossible resource request: the actors need 4 CPU"):
        run("sft.strategy=ddp", "sft.world_size=4", "resources.policy.num_cpus=1")


def test_deepspeed_config_follows_the_recipe():
    spec = DistributedSpec("deepspeed", 1, 4, zero_stage=3, offload_optimizer=True)
    config = deepspeed_config(spec, grad_clip=1.0, dtype="bfloat16", backend="nccl")
    # Our loop ends each step, whatever its micro-batches: DeepSpeed's unmanaged accumulation.
    assert config["managed_gradient_accumulation"] is False and config["gradient_accumulation_steps"] == 1
    assert config["gradient_clipping"] == 1.0
    assert config["bf16"] == {"enabled": True}
    assert config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert config["zero_force_ds_cpu_optimizer"] is False  # torch's AdamW steps the offloaded state
    assert deepspeed_config(spec, 1.0, "float16", "nccl")["fp16"] == {"enabled": True, "loss_scale": 0}
    assert deepspeed_config(DistributedSpec("ddp", 0, 2), 1.0, "float32", "gloo")["bf16"] == {"enabled": False}
    with pytest.raises(ValueError, match="rank 4 does not fit world_size 4"):
        DistributedSpec("ddp", 4, 4)

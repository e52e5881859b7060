"""End to end through real Ray actors, CI-sized: PA-SFT then SC-GRPO update the policy
and log every metric; a killed run resumes and continues identically."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from iadr1_rl.backends.local_grpo import run_grpo
from iadr1_rl.backends.local_sft import run_sft
from iadr1_rl.train import run_log
from iadr1_rl.train.config import load_config
from rewards import Scorer

ROOT = Path(__file__).resolve().parent.parent

GRPO_METRICS = {
    "reward_total",
    "reward_total_std",
    "reward_normalised",
    "reward_consistency",
    "reward_accuracy",
    "reward_location",
    "reward_type",
    "reward_consistency_std",
    "reward_accuracy_std",
    "reward_location_std",
    "reward_type_std",
    "answer_accuracy",
    "kl",
    "loss",
    "clip_fraction",
    "response_length",
    "groups_without_signal",
    "samples_per_second",
    "tokens_per_second",
    "time_rollout",
    "time_reward",
    "time_reference",
    "time_train",
}
SFT_METRICS = {"loss", "lr", "grad_norm", "samples_per_second", "tokens_per_second"}


def overrides(run_dir: Path, model_dir: Path, records: Path) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"model.path={model_dir}",
        f"data.train={records}",
        f"data.eval={records}",
        f"sft.output={run_dir / 'sft'}",
        f"grpo.output={run_dir / 'grpo'}",
        f"grpo.init={run_dir / 'sft' / 'final'}",
        "sft.batch_size=6",
        "sft.epochs=1",
        "sft.lr=5e-3",
        "grpo.steps=4",
        "grpo.prompts_per_step=3",
        "grpo.group_size=3",
        "grpo.max_new_tokens=8",
        "grpo.lr=1e-3",
        "checkpoint.every=2",
        "checkpoint.keep=3",
        "eval.max_new_tokens=4",
        "eval.batch_size=24",
        "resources.torch_threads=1",
        "resources.policy.num_cpus=0.5",
        "resources.reference.num_cpus=0.5",
        "resources.rollout.num_cpus=0.5",
    ]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_then_grpo_update_and_log(ray_session, tmp_path, tiny_model_dir, synthetic_records):
    # Enough PA-SFT for well-formed, varied answers, so that SC-GRPO groups carry signal.
    config = load_config(
        None,
        [
            *overrides(tmp_path, tiny_model_dir, synthetic_records),
            "sft.epochs=12",
            "grpo.max_new_tokens=40",
            "eval.max_new_tokens=40",
            "grpo.scorer={weights: {type: 2}}",
        ],
    )
    sft = run_sft(config, progress=False)
    assert sft["steps"] == 48 and "eval" in sft
    # One reward per run: trained on, saved beside the run, evaluated with, named in every report.
    digest = Scorer.from_config({"weights": {"type": 2}}).digest
    assert sft["scorer"]["digest"] == sft["eval"]["scorer"]["digest"] == digest
    assert Scorer.from_config(tmp_path / "sft" / "scorer.json").digest == digest
    initial, after_sft = weights(tiny_model_dir), weights(tmp_path / "sft" / "final")
    assert any(not torch.equal(initial[k], after_sft[k]) for k in initial)
    assert all(SFT_METRICS <= set(r) for r in rows(tmp_path / "sft" / "metrics.jsonl"))
    grpo = run_grpo(config, progress=False)
    assert grpo["steps"] == 4 and grpo["mean_reward_start"] is not None
    assert grpo["scorer"]["digest"] == grpo["eval"]["scorer"]["digest"] == digest
    assert json.loads((tmp_path / "grpo" / "eval" / "eval.json").read_text())["scorer"]["digest"] == digest
    assert grpo["reward_fitted_rise"]["n"] == grpo["normalised_reward_fitted_rise"]["n"] == 4
    after_grpo = weights(tmp_path / "grpo" / "final")
    assert any(not torch.equal(after_sft[k], after_grpo[k]) for k in after_sft)
    logged = rows(tmp_path / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert any(r["groups_without_signal"] < 3 for r in logged)  # some groups carried a learning signal
    assert all(GRPO_METRICS <= set(r) for r in logged), GRPO_METRICS - set(logged[0])
    for name in ("curves.png", "config.yaml", "summary.json", "eval/eval.json", "eval/eval.png"):
        assert (tmp_path / "grpo" / name).is_file(), name
    assert list((tmp_path / "grpo" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "grpo" / "checkpoints" / "step_000002" / "optimizer.pt").is_file()


def test_grpo_crash_resumes_identically(ray_session, tmp_path, tiny_model_dir, synthetic_records, monkeypatch):
    base = overrides(tmp_path, tiny_model_dir, synthetic_records)
    sft_config = load_config(None, base)
    run_sft(sft_config, progress=False, run_eval=False)
    straight = load_config(None, [*base, f"grpo.output={tmp_path / 'straight'}"])
    run_grpo(straight, progress=False, run_eval=False)

    crashed = load_config(None, [*base, f"grpo.output={tmp_path / 'crashed'}"])
    original_log = run_log.RunLogger.log

    def crash_at_step_3(self, step, metrics):
        if step == 3:
            raise KeyboardInterrupt("killed")
        original_log(self, step, metrics)

    monkeypatch.setattr(run_log.RunLogger, "log", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(crashed, progress=False, run_eval=False)
    monkeypatch.setattr(run_log.RunLogger, "log", original_log)
    assert (tmp_path / "crashed" / "checkpoints" / "latest").read_text().strip() == "step_000002"
    run_grpo(crashed, resume=True, progress=False, run_eval=False)

    a, b = weights(tmp_path / "straight" / "final"), weights(tmp_path / "crashed" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rewards = lambda d: [(r["step"], r["reward_total"]) for r in rows(tmp_path / d / "metrics.jsonl")]  # noqa: E731
    assert rewards("straight") == rewards("crashed")


def test_sft_killed_process_resumes(tmp_path, tiny_model_dir, synthetic_records):
    """A real SIGKILL of the recipe process, then --resume: the same final weights."""
    base = [*overrides(tmp_path, tiny_model_dir, synthetic_records), "sft.batch_size=2", "checkpoint.every=3"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    recipe = [sys.executable, str(ROOT / "recipes" / "pa_sft.py"), "--no-eval", "--no-progress"]
    subprocess.run([*recipe, *base, f"sft.output={tmp_path / 'straight'}"], check=True, env=env, capture_output=True)
    victim = subprocess.Popen(
        [*recipe, *base, f"sft.output={tmp_path / 'killed'}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoints" / "step_000006").is_dir():
        assert victim.poll() is None and time.monotonic() < deadline, "no checkpoint before the deadline"
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)  # the driver and the local Ray it started (its own session)
    victim.wait()
    assert not (tmp_path / "killed" / "final").exists()
    done = subprocess.run(
        [*recipe, *base, f"sft.output={tmp_path / 'killed'}", "--resume"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = weights(tmp_path / "straight" / "final"), weights(tmp_path / "killed" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [r["step"] for r in rows(tmp_path / "killed" / "metrics.jsonl")]
    assert steps == list(range(1, 13))  # no step logged twice, none missing


def test_clear_errors_before_anything_starts(ray_session, tmp_path, tiny_model_dir, synthetic_records):
    base = overrides(tmp_path, tiny_model_dir, synthetic_records)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        run_sft(load_config(None, [*base, f"model.path={tmp_path / 'missing'}"]), progress=False)
    with pytest.raises(FileNotFoundError, match="training data not found"):
        run_sft(load_config(None, [*base, f"data.train={tmp_path / 'none.jsonl'}"]), progress=False)
    with pytest.raises(RuntimeError, match=r"impossible resource request.*GPU"):
        run_sft(load_config(None, [*base, "resources.policy.num_gpus=2"]), progress=False)

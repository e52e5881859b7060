"""End to end through real Ray actors, CI-sized: PA-SFT then SC-GRPO update the policy
and log every metric; a stopped run resumes and continues identically (an SC-GRPO run
killed with SIGKILL, then resumed: tests/test_resilience.py)."""

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

from iadr1_rl.backends.local.grpo import run_grpo
from iadr1_rl.backends.local.sft import run_sft
from iadr1_rl.train.config import load_config
from rewards import Scorer

from .conftest import session_processes

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
    "time_sync",
    "sync_gib",
    "time_step",
    "memory_policy_gib",
    "memory_reference_gib",
    "memory_rollout_gib",
    "micro_batches",
}
SFT_METRICS = {"loss", "lr", "grad_norm", "samples_per_second", "tokens_per_second", "memory_policy_gib"}


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
    # Each evaluation generated in an actor placed as the training was (here: the CPU), not on the driver.
    assert sft["eval"]["generated_with"] == grpo["eval"]["generated_with"] == {"engine": "hf", "device": "cpu"}
    assert json.loads((tmp_path / "grpo" / "eval" / "eval.json").read_text())["scorer"]["digest"] == digest
    assert grpo["reward_fitted_rise"]["n"] == grpo["normalised_reward_fitted_rise"]["n"] == 4
    after_grpo = weights(tmp_path / "grpo" / "final")
    assert any(not torch.equal(after_sft[k], after_grpo[k]) for k in after_sft)
    logged = rows(tmp_path / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert any(r["groups_without_signal"] < 3 for r in logged)  # some groups carried a learning signal
    assert all(GRPO_METRICS <= set(r) for r in logged), GRPO_METRICS - set(logged[0])
    assert len({r["sync_gib"] for r in logged}) == 1 and logged[0]["sync_gib"] > 0  # one whole copy each step
    for name in ("curves.png", "config.yaml", "summary.json", "eval/eval.json", "eval/eval.png", "eval/report.html"):
        assert (tmp_path / "grpo" / name).is_file(), name
    page = (tmp_path / "grpo" / "eval" / "report.html").read_text()
    n_eval = sum(d["n"] for d in grpo["eval"]["datasets"].values())
    assert page.count('<section class="item') == n_eval and f"scorer {digest}" in page
    assert list((tmp_path / "grpo" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "grpo" / "checkpoints" / "step_000002" / "optimizer.pt").is_file()


def recipe(name: str) -> list[str]:
    return [sys.executable, str(ROOT / "recipes" / name), "--no-eval", "--no-progress"]


def wait_for(path: Path, victim: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert victim.poll() is None and time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_sft_stopped_with_sigterm_leaves_nothing_and_resumes(ray_session, tmp_path, tiny_model_dir, synthetic_records):
    """SIGTERM to the recipe alone (as `timeout`, a scheduler or `kill` send it): it stops its
    actors and the Ray it started, no process of its session lives on; its checkpoint refuses
    another run's settings, and --resume (with a placement change) ends on the uninterrupted
    run's weights."""
    base = [*overrides(tmp_path, tiny_model_dir, synthetic_records), "sft.batch_size=2", "checkpoint.every=3"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    run_sft(load_config(None, [*base, f"sft.output={tmp_path / 'straight'}"]), progress=False, run_eval=False)
    stopped = [*recipe("pa_sft.py"), *base, f"sft.output={tmp_path / 'stopped'}"]
    victim = subprocess.Popen(
        stopped, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    wait_for(tmp_path / "stopped" / "checkpoints" / "step_000006", victim)
    assert len(session_processes(victim.pid)) > 1  # the driver and its local Ray
    victim.send_signal(signal.SIGTERM)  # the recipe alone, not its process group
    assert victim.wait(timeout=60) == 128 + signal.SIGTERM
    assert "stopped cleanly" in victim.stderr.read()
    deadline = time.monotonic() + 30
    while left := session_processes(victim.pid):
        assert time.monotonic() < deadline, [p.cmdline()[:3] for p in left]
        time.sleep(0.5)
    assert not (tmp_path / "stopped" / "final").exists()
    # (grpo.init: an SC-GRPO run from the model, to be refused for the stage alone)
    settings = [*base, f"sft.output={tmp_path / 'stopped'}", f"grpo.init={tiny_model_dir}"]
    refuses_another_run(tmp_path / "stopped", settings)
    resumed = subprocess.run(
        [*stopped, "resources.policy.num_cpus=0.4", "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(tmp_path / "straight" / "final"), weights(tmp_path / "stopped" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [r["step"] for r in rows(tmp_path / "stopped" / "metrics.jsonl")]
    assert steps == list(range(1, 13))  # no step logged twice, none missing


def refuses_another_run(output: Path, settings: list[str]) -> None:
    """A resume from `output`'s checkpoint with another run's settings is refused, naming them."""
    with pytest.raises(ValueError, match=r"belongs to another run \(config sft\.lr: 0\.005 there, 0\.0001 here\)"):
        run_sft(load_config(None, [*settings, "sft.lr=1e-4"]), resume=True, progress=False, run_eval=False)
    with pytest.raises(ValueError, match="seed: 0 there, 3 here"):
        run_sft(load_config(None, [*settings, "seed=3"]), resume=True, progress=False, run_eval=False)
    with pytest.raises(ValueError, match="stage: 'pa_sft' there, 'sc_grpo' here"):
        run_grpo(load_config(None, [*settings, f"grpo.output={output}"]), resume=True, progress=False)


def test_clear_errors_before_anything_starts(ray_session, tmp_path, tiny_model_dir, synthetic_records):
    base = overrides(tmp_path, tiny_model_dir, synthetic_records)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        run_sft(load_config(None, [*base, f"model.path={tmp_path / 'missing'}"]), progress=False)
    with pytest.raises(FileNotFoundError, match=r"training records not found: .*iadr1-data synth"):
        run_sft(load_config(None, [*base, f"data.train={tmp_path / 'none.jsonl'}"]), progress=False)
    with pytest.raises(RuntimeError, match=r"impossible resource request.*GPU"):
        run_sft(load_config(None, [*base, "resources.policy.num_gpus=2"]), progress=False)

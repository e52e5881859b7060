"""Long runs survive lost actors (`resilience.*`, `backends/local/resilience.py`).

An SC-GRPO recipe, in its own process and Ray, is killed whole (kill -9) after its step-1
checkpoint; its `--resume` loses its rollout worker (kill -9) during step 2, its reference
worker during step 3 and its policy after the step-3 checkpoint: it exits 0 with steps 1-5
logged once each, a line per restart saying what died and why, and the final weights of
an undisturbed run with the same seed, bit for bit. Every wait names the actor it waited
on: a dead one with Ray's reason, a hung one at its bound.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file

from iadr1_rl.backends.local.actor_groups import wait_ready
from iadr1_rl.backends.local.grpo import run_grpo
from iadr1_rl.backends.local.resilience import ActorLost, ActorRef, RestartBudget, death_reason, wait_for
from iadr1_rl.train.config import load_config

DEAD_WORKER = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: RolloutActor\nThe actor is dead because "
    "its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a "
    "connection error code 2. Some common causes include: (1) the process was killed by the OOM killer due to high "
    "memory usage, (2) ray stop --force was called"
)  # what Ray 2.60 says after a kill -9 (measured here)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (DEAD_WORKER, "its process was killed or exited (SYSTEM_ERROR)"),  # not OOM: that is in Ray's list of causes
        ("The actor is dead because it was killed by `ray.kill`.", "killed (ray.kill)"),
        ("The actor is dead because its node has died. Node Id: 3f", "its node was lost"),
        ("Task was killed due to the node running low on memory. Memory on the node", "out of memory"),
        (
            "The actor 9a is unavailable: The actor is temporarily unavailable: RpcError: Socket closed",
            "unreachable (its node or its process is gone)",
        ),  # what a removed node's actor says first (measured, tests/test_preemption.py)
    ],
)
def test_the_reason_of_a_death_is_said_in_a_few_words(message, reason):
    assert death_reason(RuntimeError(message)) == reason


def test_a_wait_names_the_actor_that_died_or_hung(ray_session):
    @ray.remote(num_cpus=0.1)
    class Worker:
        def answer(self, seconds: float = 0.0) -> int:
            time.sleep(seconds)
            return 7

    alive, dead, hung = Worker.remote(), Worker.remote(), Worker.remote()
    assert wait_for([alive.answer.remote()], [ActorRef("rollout", 0)], 30) == [7]
    ray.get(dead.answer.remote())
    ray.kill(dead)
    deadline = time.monotonic() + 30
    while True:  # ray.kill is asynchronous: a call may still be answered until the kill lands
        try:
            ray.get(dead.answer.remote())
        except ray.exceptions.RayActorError:
            break
        assert time.monotonic() < deadline, "ray.kill did not end the actor"
    with pytest.raises(ActorLost, match=r"reference worker 1 was lost: killed \(ray\.kill\)") as lost:
        wait_for([alive.answer.remote(), dead.answer.remote()], [ActorRef("rollout", 0), ActorRef("reference", 1)], 30)
    assert lost.value.stateless
    started = time.monotonic()
    with pytest.raises(
        ActorLost, match=r"policy rank 0 was lost: did not answer within resilience\.call_timeout_s=1 s"
    ):
        wait_for([hung.answer.remote(3600)], [ActorRef("policy", 0)], 1)
    assert time.monotonic() - started < 20
    for actor in (alive, hung):
        ray.kill(actor)


def test_a_start_is_bounded_and_a_constructor_s_error_is_its_own(ray_session):
    @ray.remote(num_cpus=0.1)
    class Starting:
        def __init__(self, seconds: float = 0.0, fail: bool = False) -> None:
            if fail:
                raise ValueError("no weights in /models/missing")
            time.sleep(seconds)

        def ready(self) -> bool:
            return True

    ready, stuck = Starting.remote(), Starting.remote(3600)
    ray.get(ready.ready.remote())  # its process up: only the stuck one can be late
    started = time.monotonic()
    with pytest.raises(ActorLost, match=r"rollout worker 1 was lost: did not answer within .*call_timeout_s=3 s"):
        wait_ready({"policy": ready, "rollout 1": stuck}, 3)
    assert time.monotonic() - started < 20
    for actor in (ready, stuck):
        ray.kill(actor)
    # Not a loss: a new one would fail the same way, so Ray's error (with the constructor's) is raised.
    with pytest.raises(ray.exceptions.RayActorError, match="no weights in /models/missing") as failed:
        wait_ready({"reference 0": Starting.remote(fail=True)}, 30)
    assert not isinstance(failed.value, ActorLost)


def test_restarts_are_bounded_per_actor():
    budget = RestartBudget(limit=2)
    lost = ActorLost(ActorRef("rollout", 1), "out of memory")
    assert budget.spend(lost) == 1 and budget.spend(lost) == 2
    assert budget.spend(ActorLost(ActorRef("rollout", 0), "out of memory")) == 1  # another actor's own count
    with pytest.raises(RuntimeError, match=r"rollout worker 1 was lost again \(out of memory\) after 2 restart"):
        budget.spend(lost)


# ------------------------------------------------------------ one run, three losses
def base_overrides(tmp_path: Path, model: Path, records: Path) -> list[str]:
    return [
        f"run_dir={tmp_path}",
        f"model.path={model}",
        f"grpo.init={model}",
        f"data.train={records}",
        "data.eval=''",
        "data.shots=1",
        "grpo.steps=5",
        "grpo.prompts_per_step=2",
        "grpo.group_size=3",
        "grpo.max_new_tokens=12",
        "grpo.lr=1e-3",
        "checkpoint.every=1",
        "checkpoint.keep=0",
        "resources.torch_threads=1",
        "resources.policy.num_cpus=0.4",
        "resources.reference.num_cpus=0.4",
        "resources.rollout.num_cpus=0.4",
    ]


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def test_a_run_killed_then_losing_its_rollout_reference_and_policy_ends_as_an_undisturbed_one(
    ray_session, tmp_path, formatted_model, synthetic_records, start_recipe
):
    """kill -9 of the whole recipe after the step-1 checkpoint (nothing can clean up), then
    `--resume`; that run loses its rollout worker during step 2, its reference during step 3
    and its policy after the step-3 checkpoint, and ends by itself."""
    base = base_overrides(tmp_path, formatted_model, synthetic_records)
    straight = tmp_path / "straight"
    run_grpo(load_config(None, [*base, f"grpo.output={straight}"]), progress=False, run_eval=False)

    out = tmp_path / "faulted"
    killed = start_recipe("sc_grpo.py", *base, f"grpo.output={out}")
    killed.wait_until((out / "checkpoints" / "step_000001").is_dir, "the step-1 checkpoint")
    killed.kill()
    assert not (out / "final").exists()

    resumed = start_recipe("sc_grpo.py", *base, f"grpo.output={out}", "--resume")
    resumed.wait_until(lambda: resumed.says("started rollout"), "the actors' start")
    resumed.actor_process("RolloutActor").kill()  # during step 2
    resumed.wait_until(lambda: len(logged_steps(out)) >= 2, "step 2")
    resumed.actor_process("ReferenceActor").kill()  # during step 3
    resumed.wait_until((out / "checkpoints" / "step_000003").is_dir, "the step-3 checkpoint")
    resumed.actor_process("PolicyActor").kill()  # during step 4
    returncode, stderr = resumed.finish(600), resumed.stderr()
    assert returncode == 0, stderr[-3000:]

    assert logged_steps(out) == [1, 2, 3, 4, 5]  # each once, none missing
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    said = [(e["event"], e["lost"], e["step"]) for e in events]
    assert said[:2] == [("actor_restart", "rollout worker 0", 2), ("actor_restart", "reference worker 0", 3)], said
    assert said[-1][:2] == ("run_restart", "policy rank 0") and events[-1]["resumed_from_step"] >= 3, said
    assert all("killed" in e["reason"] or "exited" in e["reason"] for e in events), events
    assert "run_restart at step" in stderr and "actor_restart at step 2" in stderr  # said on the console

    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(out / "final" / "model.safetensors")
    initial = load_file(formatted_model / "model.safetensors")
    assert any(not torch.equal(initial[k], a[k]) for k in a)  # the run moved the policy
    assert all(torch.equal(a[k], b[k]) for k in a), max((a[k] - b[k]).abs().max().item() for k in a)
    rewards = lambda d: [json.loads(line)["reward_total"] for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rewards(straight) == rewards(out)  # the same samples, step for step

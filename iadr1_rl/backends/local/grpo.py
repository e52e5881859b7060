"""SC-GRPO on the local backend: the trainer loop. Each step the experience maker returns
scored, grouped rollouts with their advantages; the policy takes its PPO-clipped steps
with the KL penalty to the reference; its weights flow back to the rollout workers.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from ...eval.compare import fitted_rise
from ...models.processor import load_processor
from ...train.config import RecipeConfig
from ...train.sequences import GRPOBatch
from . import ray_env
from .actor_groups import GRPOActors
from .experience import Experience, ExperienceMaker
from .plan import GRPOPlan
from .resilience import ActorLost, RestartBudget
from .run import Run

T = TypeVar("T")

GRPO_CURVES = [
    "reward_total",
    "reward_normalised",
    "reward_accuracy",
    "reward_location",
    "reward_type",
    "reward_consistency",
    "kl",
    "loss",
    "clip_fraction",
    "response_length",
    "groups_without_signal",
    "location_accuracy",
    "samples_per_second",
    "memory_policy_gib",
]


def run_grpo(config: RecipeConfig, resume: bool = False, progress: bool = True, run_eval: bool = True) -> dict:
    plan = GRPOPlan.from_config(config)  # every input checked before Ray starts
    run = Run(plan.run, config, resume, progress)
    try:
        ray_env.connect(plan.run.ray_address)
        ray_env.check_resources(plan.resources)
        train_restarting(run, plan)
        return run.finish(GRPO_CURVES, "SC-GRPO", training_reward_trend(run.log.rows), run_eval, progress)
    except BaseException:
        run.abandon()
        raise


def train_restarting(run: Run, plan: GRPOPlan) -> None:
    """Train; after a lost policy rank (or an actor lost outside a step's recovery) start
    every actor again from the last checkpoint, at most resilience.max_run_restarts times."""
    for attempt in itertools.count():
        try:
            return train_with_new_actors(run, plan)
        except ActorLost as lost:
            if attempt >= plan.max_run_restarts:
                raise RuntimeError(
                    f"{lost}; the run has restarted {attempt} time(s) (resilience.max_run_restarts="
                    f"{plan.max_run_restarts}): stopping; --resume continues from the last checkpoint"
                ) from lost
            step = run.restart()
            run.event(step, "run_restart", lost=str(lost.actor), reason=lost.reason, resumed_from_step=step)


def train_with_new_actors(run: Run, plan: GRPOPlan) -> None:
    """Start every actor where the plan places them, from the run's checkpoint (or its
    start), and train to `final/`; the actors are freed however it ends."""
    policy_path = str(run.checkpoint or plan.init)
    placement = ray_env.Placement.create(plan.memory, plan.resources)
    try:
        actors = GRPOActors.start(plan, policy_path, placement)
        try:
            train(run, plan, actors, policy_path)
        finally:  # a crash (ours or an actor's) or a stop frees the actors' resources
            actors.kill()
    finally:
        placement.remove()


def train(run: Run, plan: GRPOPlan, actors: GRPOActors, policy_path: str) -> None:
    """The steps from the run's start (or its checkpoint) to `final/`."""
    if run.checkpoint is not None:
        actors.policy.load_training_state(str(run.checkpoint))
    pixels = {"max_pixels": plan.model.max_pixels} if plan.model.max_pixels else {}
    processor = load_processor(policy_path, **pixels)
    maker = ExperienceMaker(plan, processor, run.scorer, actors)
    budget = RestartBudget(plan.max_actor_restarts)
    for step in run.steps():
        tick = time.perf_counter()

        survive = functools.partial(surviving, actors=actors, budget=budget, run=run, step=step + 1)
        experience = survive(functools.partial(maker.make, step))  # redone whole, with its seeds, after a loss
        metrics = {**experience.metrics, **train_on(actors, experience, plan, survive)}
        metrics["time_step"] = time.perf_counter() - tick
        metrics.update(actors.peak_memory())
        postfix = {"reward": f"{metrics['reward_total']:.2f}", "kl": f"{metrics.get('kl', 0):.4f}"}
        run.record(step + 1, rates(metrics), postfix)
        run.maybe_checkpoint(step + 1, actors.policy.save_checkpoint)
    run.save_final(actors.policy.save_model)


def surviving(action: Callable[[], T], actors: GRPOActors, budget: RestartBudget, run: Run, step: int) -> T:
    """`action()`, done again after a lost rollout or reference worker is started anew where
    it was (`GRPOActors.replace`: a new rollout worker takes the current weights first); the
    same seeds draw the same samples, so the run goes on as if nothing happened. A lost
    policy rank, or a worker lost more than resilience.max_actor_restarts times, ends it."""
    while True:
        try:
            return action()
        except ActorLost as lost:
            if not lost.stateless:
                raise
            count = budget.spend(lost)
            run.event(step, "actor_restart", lost=str(lost.actor), reason=lost.reason, restart=count)
            actors.replace(lost.actor)


def train_on(
    actors: GRPOActors, experience: Experience, plan: GRPOPlan, survive: Callable = lambda action: action()
) -> dict[str, float]:
    """`ppo_epochs` passes over the step's samples in `mini_batches`, then the new weights to
    the rollout workers (timed apart; `survive` redoes a sync a lost worker interrupted).
    Nothing to train on (every group dropped) is no update, and nothing new to send."""
    samples = experience.samples
    if not samples:
        return {"time_train": 0.0, "time_sync": 0.0, "sync_gib": 0.0}
    tick = time.perf_counter()
    size = -(-len(samples) // plan.mini_batches)
    sampling, old = experience.sampling_logprobs, experience.old_logprobs
    updates = []
    for _ in range(plan.ppo_epochs):
        for start in range(0, len(samples), size):
            part = slice(start, start + size)
            update = GRPOBatch(
                samples[part],
                experience.advantages[part],
                experience.ref_logprobs[part],
                None if old is None else old[part],
                # On policy the update's own log-probs are the sampling policy's: compare there.
                sampling[part] if sampling is not None and old is None else None,
            )
            updates.append(actors.policy.grpo_step(update, plan.ppo))
    metrics = {key: statistics.fmean(u[key] for u in updates) for key in updates[0]}
    if sampling is not None and old is not None:  # off policy: the old log-probs are the sampling policy's
        metrics["rollout_logprob_gap"] = mean_gap(sampling, old)
    if "rollout_logprob_gap" in metrics:
        check_gap(metrics["rollout_logprob_gap"], plan.max_logprob_gap, actors.weights_version)
    metrics["weights_version"] = actors.weights_version  # what the workers sampled with
    metrics["time_train"] = time.perf_counter() - tick
    tick = time.perf_counter()
    sent = actors.sync_bytes
    survive(lambda: actors.sync_weights(timeout_s=plan.sync_timeout_s))
    # What the step's sync sent, every worker's copy counted (a sync redone for a new worker too).
    return {**metrics, "time_sync": time.perf_counter() - tick, "sync_gib": (actors.sync_bytes - sent) / 2**30}


def mean_gap(engine: list[list[float]], policy: list[list[float]]) -> float:
    """The mean absolute difference per response token between two sets of log-probs."""
    pairs = [(a, b) for row_a, row_b in zip(engine, policy) for a, b in zip(row_a, row_b)]
    return statistics.fmean(abs(a - b) for a, b in pairs) if pairs else 0.0


def check_gap(gap: float, limit: float, version: int) -> None:
    """A step on samples from other weights than the policy's is never kept: the run stops
    before the step is logged, checkpointed or synced (on policy the gap is measured by the
    update itself, whose result is then thrown away with the run)."""
    if gap > limit:
        raise RuntimeError(
            f"rollout_logprob_gap {gap:.3g} is over rollout.max_logprob_gap {limit:g}: the rollout engine's "
            f"log-probs are not the policy's (weights version {version}); its weights or its sampling differ. "
            "Stopping before this step is kept; --resume continues from the last checkpoint"
        )


def rates(metrics: dict[str, float]) -> dict[str, float]:
    """Completions and tokens sampled per second over the step's time."""
    elapsed = metrics["time_step"] or float("inf")
    return {
        **metrics,
        "samples_per_second": metrics["samples"] / elapsed,
        "tokens_per_second": metrics["samples"] * metrics["response_length"] / elapsed,
    }


def training_reward_trend(rows: list[dict]) -> dict:
    """The training reward at the start and the end of a run, and the line through every
    step (what the run's summary reports; an evaluation's reward is `eval.metrics`')."""
    window = max(1, min(10, len(rows) // 5))
    rewards = [row["reward_total"] for row in rows]

    def rise(metric: str) -> dict | None:
        values = [row[metric] for row in rows]
        return fitted_rise(metric, values).to_json() if len(values) >= 3 else None

    return {
        "mean_reward_start": statistics.fmean(rewards[:window]) if rewards else None,
        "mean_reward_end": statistics.fmean(rewards[-window:]) if rewards else None,
        "reward_window": window,
        # The least-squares rise over every step, with its standard error: is the rise noise?
        "reward_fitted_rise": rise("reward_total"),
        "normalised_reward_fitted_rise": rise("reward_normalised"),
    }

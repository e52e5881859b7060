"""SC-GRPO on the local backend: the trainer loop. Each step the experience maker returns
scored, grouped rollouts with their advantages; the policy takes its PPO-clipped steps
with the KL penalty to the reference; its weights flow back to the rollout workers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import ray

from ..actors import PolicyActor, ReferenceActor, RolloutActor
from ..eval.compare import fitted_rise
from ..models.processor import load_processor
from ..train.config import RecipeConfig
from . import ray_env
from .experience import Experience, ExperienceMaker
from .plan import GRPOPlan
from .run import Run

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
]


@dataclass
class Actors:
    """The policy, the frozen reference and the rollout workers of one run."""

    policy: object
    reference: object
    rollouts: list

    @classmethod
    def start(cls, plan: GRPOPlan, policy_path: str) -> Actors:
        model = plan.model
        policy = ray_env.remote(PolicyActor, plan.resources["policy"]).remote(
            **model.actor_kwargs(policy_path),
            lr=plan.optimizer.lr,
            total_steps=plan.optimizer.total_steps,
            warmup_steps=plan.optimizer.warmup_steps,
            grad_clip=plan.optimizer.grad_clip,
            gradient_checkpointing=model.gradient_checkpointing,
        )
        reference = ray_env.remote(ReferenceActor, plan.resources["reference"]).remote(**model.actor_kwargs(plan.init))
        rollout = ray_env.remote(RolloutActor, plan.resources["rollout0"])
        rollouts = [
            rollout.remote(**model.actor_kwargs(policy_path), use_vllm=plan.use_vllm)
            for _ in range(plan.rollout_workers)
        ]
        actors = cls(policy, reference, rollouts)
        ray.get([a.ready.remote() for a in actors.all()])
        return actors

    def all(self) -> list:
        return [self.policy, self.reference, *self.rollouts]

    def kill(self) -> None:
        for actor in self.all():
            ray.kill(actor)


def run_grpo(config: RecipeConfig, resume: bool = False, progress: bool = True, run_eval: bool = True) -> dict:
    plan = GRPOPlan.from_config(config)  # every input checked before Ray starts
    run = Run(plan.run, config, resume, progress)
    ray_env.connect(plan.run.ray_address)
    ray_env.check_resources(plan.resources)
    policy_path = str(run.checkpoint or plan.init)
    actors = Actors.start(plan, policy_path)
    try:
        if run.checkpoint is not None:
            _wait(actors.policy.load_training_state.remote(str(run.checkpoint)))
        pixels = {"max_pixels": plan.model.max_pixels} if plan.model.max_pixels else {}
        processor = load_processor(policy_path, **pixels)
        maker = ExperienceMaker(plan, processor, run.scorer, actors.rollouts, actors.reference, actors.policy)
        for step in run.steps():
            experience = maker.make(step)
            metrics = {**experience.metrics, **train_on(actors, experience, plan)}
            postfix = {"reward": f"{metrics['reward_total']:.2f}", "kl": f"{metrics.get('kl', 0):.4f}"}
            run.record(step + 1, rates(metrics), postfix)
            run.maybe_checkpoint(step + 1, lambda path: _wait(actors.policy.save_checkpoint.remote(path)))
        run.save_final(lambda path: _wait(actors.policy.save_model.remote(path)))
    finally:  # a crash (ours or an actor's) or a stop frees the actors' resources
        actors.kill()
    return run.finish(GRPO_CURVES, "SC-GRPO", reward_summary(run.log.rows), run_eval, progress)


def train_on(actors: Actors, experience: Experience, plan: GRPOPlan) -> dict[str, float]:
    """`ppo_epochs` passes over the step's samples in `mini_batches`, then the new weights
    go to the rollout workers. Nothing to train on (every group dropped) is no update."""
    samples = experience.samples
    if not samples:
        return {"time_train": 0.0}
    tick = time.perf_counter()
    size = -(-len(samples) // plan.mini_batches)
    updates = []
    for _ in range(plan.ppo_epochs):
        for start in range(0, len(samples), size):
            part = slice(start, start + size)
            old = None if experience.old_logprobs is None else experience.old_logprobs[part]
            updates.append(
                _wait(
                    actors.policy.grpo_step.remote(
                        samples[part],
                        experience.advantages[part],
                        old,
                        experience.ref_logprobs[part],
                        plan.clip,
                        plan.beta,
                        plan.sampling.temperature,
                    )
                )
            )
    weights = actors.policy.state_dict.remote()
    _wait([worker.load_weights.remote(weights) for worker in actors.rollouts])
    metrics = {key: statistics.fmean(u[key] for u in updates) for key in updates[0]}
    return {**metrics, "time_train": time.perf_counter() - tick}


def rates(metrics: dict[str, float]) -> dict[str, float]:
    """Completions and tokens sampled per second over the step's measured time."""
    elapsed = sum(v for k, v in metrics.items() if k.startswith("time_")) or float("inf")
    return {
        **metrics,
        "samples_per_second": metrics["samples"] / elapsed,
        "tokens_per_second": metrics["samples"] * metrics["response_length"] / elapsed,
    }


def reward_summary(rows: list[dict]) -> dict:
    """The training reward at the start and the end, and the line through every step."""
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


def _wait(refs):
    return ray.get(refs)

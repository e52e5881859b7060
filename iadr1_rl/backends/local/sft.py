"""PA-SFT on the local backend: full-parameter, on one PolicyActor or on `sft.world_size`
data-parallel ranks (DDP or DeepSpeed ZeRO, see `actor_groups.PolicyGroup`)."""

from __future__ import annotations

import time

from ...train.config import RecipeConfig
from ...train.data_order import batch_at
from . import ray_env
from .actor_groups import PolicyGroup, peak_metrics, start_sft_policy
from .plan import SFTPlan
from .run import Run

SFT_CURVES = ["loss", "lr", "grad_norm", "samples_per_second", "memory_policy_gib"]


def run_sft(config: RecipeConfig, resume: bool = False, progress: bool = True, run_eval: bool = True) -> dict:
    """Train, checkpoint every `checkpoint.every` steps, save `<output>/final`, evaluate."""
    plan = SFTPlan.from_config(config)  # every input checked before Ray starts
    run = Run(plan.run, config, resume, progress)
    try:
        ray_env.connect(plan.run.ray_address)
        ray_env.check_resources(plan.resources)
        train(run, plan)
        final_loss = run.log.rows[-1]["loss"] if run.log.rows else None
        return run.finish(SFT_CURVES, "PA-SFT", {"final_loss": final_loss}, run_eval, progress)
    except BaseException:
        run.abandon()
        raise


def train(run: Run, plan: SFTPlan) -> None:
    """The steps from the run's start (or its checkpoint) to `final/`, the actors freed however it ends."""
    placement = ray_env.Placement.create(plan.memory, plan.resources)
    try:
        policy = start_sft_policy(plan, str(run.checkpoint or plan.model.path), placement)
        try:
            if run.checkpoint is not None:
                policy.load_training_state(str(run.checkpoint))
            for step in run.steps():
                metrics = {**sft_step(policy, plan, step), **peak_metrics({"policy": policy.peak_memory()})}
                run.record(step + 1, metrics, {"loss": f"{metrics['loss']:.4f}"})
                run.maybe_checkpoint(step + 1, policy.save_checkpoint)
            run.save_final(policy.save_model)
        finally:  # a crash or a stop frees the actors' resources
            policy.kill()
    finally:
        placement.remove()


def sft_step(policy: PolicyGroup, plan: SFTPlan, step: int) -> dict[str, float]:
    """One optimiser step on the step's records (a function of seed and step: resumable)."""
    tick = time.perf_counter()
    batch = batch_at(plan.records, step, plan.batch_size, plan.run.seed)
    metrics = policy.sft_step(batch)
    elapsed = time.perf_counter() - tick
    return {
        **metrics,
        "samples_per_second": len(batch) / elapsed,
        "tokens_per_second": metrics["tokens"] / elapsed,
        "epoch": (step + 1) * plan.batch_size / len(plan.records),
    }

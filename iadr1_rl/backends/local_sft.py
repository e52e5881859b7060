"""PA-SFT on the local backend: full-parameter by default, on one PolicyActor or on
`sft.world_size` data-parallel ranks (DDP or DeepSpeed ZeRO, see `policy_group`)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from ..train.checkpoint import latest_checkpoint, read_state
from ..train.config import RecipeConfig, save_config
from ..train.data_order import batch_at
from ..train.run_log import RunLogger
from . import ray_env
from .local import actor_kwargs, finish, maybe_checkpoint, resources, run_scorer, training_records
from .policy_group import PolicyGroup, check_sharding

logger = logging.getLogger(__name__)

SFT_CURVES = ["loss", "lr", "grad_norm", "samples_per_second"]


def run_sft(config: RecipeConfig, resume: bool = False, progress: bool = True, run_eval: bool = True) -> dict:
    """Train, checkpoint every `checkpoint.every` steps, save `<output>/final`, evaluate."""
    sft = config.sft
    out = Path(sft.output or Path(config.run_dir) / "pa_sft")
    if sft.lora:
        raise ValueError("LoRA is not implemented: the paper found full-parameter PA-SFT better (sft.lora: false)")
    check_sharding(config)
    records = training_records(config.data.train, need_response=True)
    total_steps = max(1, math.ceil(sft.epochs * len(records) / sft.batch_size))
    latest = latest_checkpoint(out) if resume else None
    start_step = read_state(latest)["step"] if latest else 0
    init = str(latest) if latest else config.model.path
    kwargs = actor_kwargs(config, init)  # checks the model folder before Ray starts
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    scorer = run_scorer(config, out)  # the run's evaluation scores with the run's reward

    ray_env.connect(config.resources.ray_address)
    ray_env.check_resources({f"policy rank {r}": resources(config.resources.policy) for r in range(sft.world_size)})
    policy = PolicyGroup(
        config,
        kwargs,
        lr=sft.lr,
        weight_decay=sft.weight_decay,
        total_steps=total_steps,
        warmup_steps=int(sft.warmup_ratio * total_steps),
        grad_clip=sft.grad_clip,
        gradient_checkpointing=config.model.gradient_checkpointing,
    )
    try:
        if latest:
            policy.load_training_state(str(latest))
            logger.info("resumed PA-SFT from %s (step %d)", latest, start_step)
        log = RunLogger(out, resume_step=start_step)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=start_step, desc="PA-SFT", unit="step")
        started = time.perf_counter()
        for step in range(start_step, total_steps):
            tick = time.perf_counter()
            batch = batch_at(records, step, sft.batch_size, config.seed)
            metrics = policy.sft_step(batch)
            elapsed = time.perf_counter() - tick
            metrics.update(
                samples_per_second=len(batch) / elapsed,
                tokens_per_second=metrics["tokens"] / elapsed,
                epoch=(step + 1) * sft.batch_size / len(records),
            )
            log.log(step + 1, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            maybe_checkpoint(policy.save_checkpoint, out, step + 1, total_steps, config, "pa_sft")
        if bar is not None:
            bar.close()
        final = out / "final"
        policy.save_model(str(final))
    finally:  # a crash frees the actors' resources
        policy.kill()
    log.plot(SFT_CURVES, out / "curves.png", title="PA-SFT")
    log.close()
    summary = {
        "steps": total_steps,
        "final_model": str(final),
        "train_seconds": time.perf_counter() - started,
        "final_loss": log.rows[-1]["loss"] if log.rows else None,
    }
    return finish(config, final, out, summary, scorer, run_eval, progress)

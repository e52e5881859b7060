"""What a local PA-SFT or SC-GRPO run does, resolved from the config in one place.

`SFTPlan.from_config` and `GRPOPlan.from_config` read every key the local backend honours
(`keys.py` says which) and check the inputs before anything starts: the runners read the
plan, never the config, so a key is either in the plan or not used, and the tests can
check each one reaches it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...data.records import Record
from ...memory.estimates import MemoryPlan
from ...memory.plan import check_memory
from ...models.generation import SamplingConfig
from ...models.loading import check_model_dir
from ...rollout.transport import TransportError, planned_seats, planned_transports
from ...train.config import PolicyRanks, RecipeConfig
from ...train.distributed import DistributedSpec
from ...train.engine import OptimizerSettings
from ...train.losses import PPOSettings
from ...train.precision import check_precision
from ..evaluation import EvalPlan
from ..keys import check_keys
from ..training_records import training_records
from .evaluation_actor import evaluation_placement

logger = logging.getLogger(__name__)

# The config values that make a run: a checkpoint records them, and resuming from a
# checkpoint that another run wrote is refused (output paths, placement, checkpoint and
# evaluation settings may change between attempts).
IDENTITY_KEYS = {
    "pa_sft": ["seed", "model", "data.train", "data.prompt", "data.shots"]
    + [f"sft.{k}" for k in ("epochs", "batch_size", "gradient_accumulation", "lr", "warmup_ratio", "weight_decay")]
    + [f"sft.{k}" for k in ("grad_clip", "strategy", "world_size", "zero_stage")],
    "sc_grpo": ["seed", "model", "data.train", "data.grpo_train", "data.prompt", "data.shots", "grpo.init"]
    + [f"grpo.{k}" for k in ("steps", "prompts_per_step", "group_size", "ppo_epochs", "mini_batches", "lr")]
    + [f"grpo.{k}" for k in ("warmup_ratio", "clip", "beta", "temperature", "top_p", "max_new_tokens")]
    + ["grpo.drop_no_signal", "grpo.grad_clip", "grpo.scorer"]
    + [f"grpo.{k}" for k in ("strategy", "world_size", "zero_stage")],
}


@dataclass(frozen=True)
class ModelPlan:
    """How every actor loads its model."""

    path: str
    dtype: str
    family: str  # the training prompt family
    max_pixels: int | None
    torch_threads: int
    gradient_checkpointing: bool
    master_weights: bool  # the policy's float32 weights (not under DeepSpeed, which keeps its own)
    train_tokens: int  # memory.train_tokens: the policy's micro-batches
    logprob_tokens: int  # memory.logprob_tokens: forward-only log-prob passes

    def actor_kwargs(self, path: str | None = None) -> dict[str, Any]:
        """What a reference actor is built with."""
        return {**self.rollout_kwargs(path), "family": self.family, "logprob_tokens": self.logprob_tokens}

    def policy_kwargs(self, path: str | None = None) -> dict[str, Any]:
        """What a policy actor (or PA-SFT rank) is built with, beside its optimizer."""
        return {
            **self.actor_kwargs(path),
            "train_tokens": self.train_tokens,
            "gradient_checkpointing": self.gradient_checkpointing,
            "master_weights": self.master_weights,
        }

    def rollout_kwargs(self, path: str | None = None) -> dict[str, Any]:
        """What a rollout actor is built with (its prompts come encoded: no prompt family)."""
        return {
            "model_path": path or self.path,
            "dtype": self.dtype,
            "torch_threads": self.torch_threads,
            "max_pixels": self.max_pixels,
        }


@dataclass(frozen=True)
class RanksPlan:
    """How a stage's policy trains: `world_size` PolicyActor ranks under `strategy` (the
    same engine for PA-SFT and SC-GRPO)."""

    strategy: str
    world_size: int
    zero_stage: int
    offload_optimizer: bool

    @classmethod
    def of(cls, section: PolicyRanks) -> RanksPlan:
        plan = cls(section.strategy, section.world_size, section.zero_stage, section.offload_optimizer)
        plan.spec(0, "127.0.0.1", 0)  # checks the combination
        return plan

    def spec(self, rank: int, address: str, port: int) -> DistributedSpec:
        return DistributedSpec(
            self.strategy, rank, self.world_size, address, port, self.zero_stage, self.offload_optimizer
        )

    def names(self) -> list[str]:
        """The ranks' names in the resources and the memory plan."""
        return ["policy"] if self.world_size == 1 else [f"policy rank {r}" for r in range(self.world_size)]


@dataclass(frozen=True)
class RunPlan:
    """What every run shares: where it writes, how it checkpoints, where Ray is."""

    stage: str
    out: Path
    seed: int
    steps: int
    checkpoint_every: int
    checkpoint_keep: int
    ray_address: str | None
    identity: dict[str, Any]
    eval: EvalPlan | None
    trackers: list[str] = field(default_factory=list)  # log.to
    tracker_project: str = "iadr1-rl"
    mlflow_uri: str | None = None


class _PlanWithRecords:
    """A stage's plan as plain data, its records by id and images (what the key tests read)."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records": [(r.id, r.images) for r in self.records]}


@dataclass(frozen=True)
class SFTPlan(_PlanWithRecords):
    run: RunPlan
    model: ModelPlan
    records: list[Record] = field(repr=False)
    batch_size: int
    micro_batches: int
    optimizer: OptimizerSettings
    ranks: RanksPlan
    resources: dict[str, dict[str, float]]
    memory: MemoryPlan

    @classmethod
    def from_config(cls, config: RecipeConfig) -> SFTPlan:
        check_keys(config, "local", "pa_sft")
        sft = config.sft
        records = training_records(config.data.train, config.data.shots, need_response=True)
        steps = max(1, math.ceil(sft.epochs * len(records) / sft.batch_size))
        ranks = RanksPlan.of(sft)
        needed = sft.world_size * sft.gradient_accumulation
        if sft.batch_size < needed:
            raise ValueError(
                f"sft.batch_size {sft.batch_size} cannot feed {sft.world_size} rank(s) × "
                f"{sft.gradient_accumulation} micro-batch(es); use at least {needed}"
            )
        return cls(
            run=run_plan(config, "pa_sft", Path(sft.output or Path(config.run_dir) / "pa_sft"), steps),
            model=model_plan(config, config.model.path, deepspeed=sft.strategy == "deepspeed"),
            records=records,
            batch_size=sft.batch_size,
            micro_batches=sft.gradient_accumulation,
            optimizer=OptimizerSettings(
                lr=sft.lr,
                weight_decay=sft.weight_decay,
                total_steps=steps,
                warmup_steps=int(sft.warmup_ratio * steps),
                grad_clip=sft.grad_clip,
            ),
            ranks=ranks,
            resources={name: placement(config, "policy") for name in ranks.names()},
            memory=check_memory(config, "pa_sft"),
        )


@dataclass(frozen=True)
class GRPOPlan(_PlanWithRecords):
    run: RunPlan
    model: ModelPlan
    init: str  # the reference model, and the policy's start
    records: list[Record] = field(repr=False)
    prompts_per_step: int
    group_size: int
    sampling: SamplingConfig
    ppo_epochs: int
    mini_batches: int
    ppo: PPOSettings
    drop_no_signal: bool
    optimizer: OptimizerSettings
    ranks: RanksPlan
    reference_workers: int
    rollout_workers: int
    rollout_engine: str
    rollout_options: dict[str, Any]  # the engine's own settings (rollout.*)
    transports: dict[str, str]  # each rollout worker's weight transport (`rollout/transport.py`)
    max_logprob_gap: float
    sync_timeout_s: float
    max_actor_restarts: int  # resilience.*: what a run survives
    max_run_restarts: int
    call_timeout_s: float
    resources: dict[str, dict[str, float]]
    memory: MemoryPlan

    @classmethod
    def from_config(cls, config: RecipeConfig) -> GRPOPlan:
        check_keys(config, "local", "sc_grpo")
        grpo = config.grpo
        init = grpo.init or config.model.path
        updates = grpo.steps * grpo.ppo_epochs * grpo.mini_batches
        workers = config.resources.num_rollout_workers
        references = config.resources.num_reference_workers
        ranks = RanksPlan.of(grpo)
        memory = check_memory(config, "sc_grpo")
        rollout_names = worker_names("rollout", workers)
        try:
            transports = planned_transports(
                config.rollout.weight_transport,
                planned_seats(memory.devices),
                ranks.names(),
                rollout_names,
                config.rollout.engine,
                config.rollout.tensor_parallel_size,
            )
        except TransportError as error:
            raise ValueError(f"{error} (as the memory plan places the actors: resources.*)") from None
        return cls(
            run=run_plan(config, "sc_grpo", Path(grpo.output or Path(config.run_dir) / "sc_grpo"), grpo.steps),
            model=model_plan(config, init, deepspeed=grpo.strategy == "deepspeed"),
            init=init,
            records=training_records(
                config.grpo_records_path(), config.data.shots, need_response=False, key=config.grpo_records_key()
            ),
            prompts_per_step=grpo.prompts_per_step,
            group_size=grpo.group_size,
            sampling=SamplingConfig(
                max_new_tokens=grpo.max_new_tokens, do_sample=True, temperature=grpo.temperature, top_p=grpo.top_p
            ),
            ppo_epochs=grpo.ppo_epochs,
            mini_batches=grpo.mini_batches,
            ppo=PPOSettings(clip=grpo.clip, beta=grpo.beta, temperature=grpo.temperature),
            drop_no_signal=grpo.drop_no_signal,
            optimizer=OptimizerSettings(
                lr=grpo.lr, total_steps=updates, warmup_steps=int(grpo.warmup_ratio * updates), grad_clip=grpo.grad_clip
            ),
            ranks=ranks,
            reference_workers=references,
            rollout_workers=workers,
            rollout_engine=config.rollout.engine,
            rollout_options=rollout_options(config),
            transports=transports,
            max_logprob_gap=config.rollout.max_logprob_gap,
            sync_timeout_s=config.rollout.sync_timeout_s,
            max_actor_restarts=config.resilience.max_actor_restarts,
            max_run_restarts=config.resilience.max_run_restarts,
            call_timeout_s=config.resilience.call_timeout_s,
            resources={
                **{name: placement(config, "policy") for name in ranks.names()},
                **{name: placement(config, "reference") for name in worker_names("reference", references)},
                **{name: placement(config, "rollout") for name in rollout_names},
            },
            memory=memory,
        )


def rollout_options(config: RecipeConfig) -> dict[str, Any]:
    """What the chosen engine is built with beyond the model (the HF engine: nothing)."""
    if config.rollout.engine == "hf":
        return {}
    rollout = config.rollout
    return {
        "gpu_memory_utilization": rollout.gpu_memory_utilization,
        "kv_cache_gib": rollout.kv_cache_gib,
        "max_model_len": rollout.max_model_len,
        "enforce_eager": rollout.enforce_eager,
        "sleep": rollout.sleep,
        "sleep_level": rollout.sleep_level,
        "tensor_parallel_size": rollout.tensor_parallel_size,
        "images_per_prompt": config.data.shots + 1,
    }


def model_plan(config: RecipeConfig, path: str, deepspeed: bool = False) -> ModelPlan:
    check_model_dir(path)  # a clear error before Ray starts
    if not deepspeed:  # DeepSpeed keeps its own master weights and loss scale
        check_precision(config.model.dtype, config.model.master_weights)
    if not config.model.master_weights and config.model.dtype != "float32" and not deepspeed:
        logger.warning(
            "model.master_weights is false: the policy trains in %s, where AdamW's updates smaller than ~1/256 of "
            "a weight round away (at lr %g most of them)",
            config.model.dtype,
            config.grpo.lr,
        )
    return ModelPlan(
        path=path,
        dtype=config.model.dtype,
        family=config.data.prompt,
        max_pixels=config.model.max_pixels,
        torch_threads=config.resources.torch_threads,
        gradient_checkpointing=config.model.gradient_checkpointing,
        master_weights=config.model.master_weights and not deepspeed,
        train_tokens=config.memory.train_tokens,
        logprob_tokens=config.memory.logprob_tokens,
    )


def run_plan(config: RecipeConfig, stage: str, out: Path, steps: int) -> RunPlan:
    evaluation = None
    if config.data.eval:
        evaluation = EvalPlan(
            records=config.data.eval,
            prompt=config.data.eval_prompt,
            shots=config.data.shots,
            batch_size=config.eval.batch_size,
            max_new_tokens=config.eval.max_new_tokens,
            dtype=config.model.dtype,
            backbone=config.backbone,
            torch_threads=config.resources.torch_threads,
            **evaluation_placement(config, stage),
        )
    identity = {key: config.plain(key) for key in IDENTITY_KEYS[stage]}
    return RunPlan(
        stage=stage,
        out=out,
        seed=config.seed,
        steps=steps,
        checkpoint_every=config.checkpoint.every,
        checkpoint_keep=config.checkpoint.keep,
        ray_address=config.resources.ray_address,
        identity=identity,
        eval=evaluation,
        trackers=list(config.log.to),
        tracker_project=config.log.project,
        mlflow_uri=config.log.mlflow_uri,
    )


def worker_names(kind: str, count: int) -> list[str]:
    """The names of `count` workers of a kind, as the resources and the memory plan give them.

    >>> worker_names("rollout", 1), worker_names("rollout", 2)
    (['rollout'], ['rollout 0', 'rollout 1'])
    """
    return [kind] if count == 1 else [f"{kind} {i}" for i in range(count)]


def placement(config: RecipeConfig, actor: str) -> dict[str, float]:
    resources = getattr(config.resources, actor)
    return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}

"""What a local PA-SFT or SC-GRPO run does, resolved from the config in one place.

`SFTPlan.from_config` and `GRPOPlan.from_config` read every key the local backend honours
(`keys.py` says which) and check the inputs before anything starts: the runners read the
plan, never the config, so a key is either in the plan or not used, and the tests can
check each one reaches it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.records import MAKE_RECORDS, Record, load_records, shape_for_shots
from ..models.generation import SamplingConfig
from ..models.loading import check_model_dir
from ..train.config import RecipeConfig
from ..train.distributed import DistributedSpec
from ..train.engine import OptimizerSettings
from .keys import check_keys

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
    + ["grpo.drop_no_signal", "grpo.grad_clip", "grpo.scorer", "resources.num_rollout_workers"],
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

    def actor_kwargs(self, path: str | None = None) -> dict[str, Any]:
        return {
            "model_path": path or self.path,
            "dtype": self.dtype,
            "family": self.family,
            "torch_threads": self.torch_threads,
            "max_pixels": self.max_pixels,
        }


@dataclass(frozen=True)
class EvalPlan:
    """The evaluation of the final model (`iadr1-eval run` + `score`, with the run's scorer)."""

    records: str
    prompt: str
    shots: int
    batch_size: int
    max_new_tokens: int
    dtype: str
    backbone: str | None


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
    strategy: str
    world_size: int
    zero_stage: int
    offload_optimizer: bool
    resources: dict[str, dict[str, float]]

    @classmethod
    def from_config(cls, config: RecipeConfig) -> SFTPlan:
        check_keys(config, "local", "pa_sft")
        sft = config.sft
        records = training_records(config.data.train, config.data.shots, need_response=True)
        steps = max(1, math.ceil(sft.epochs * len(records) / sft.batch_size))
        DistributedSpec(sft.strategy, 0, sft.world_size, zero_stage=sft.zero_stage)  # checks the combination
        needed = sft.world_size * sft.gradient_accumulation
        if sft.batch_size < needed:
            raise ValueError(
                f"sft.batch_size {sft.batch_size} cannot feed {sft.world_size} rank(s) × "
                f"{sft.gradient_accumulation} micro-batch(es); use at least {needed}"
            )
        return cls(
            run=run_plan(config, "pa_sft", Path(sft.output or Path(config.run_dir) / "pa_sft"), steps),
            model=model_plan(config, config.model.path),
            records=records,
            batch_size=sft.batch_size,
            micro_batches=sft.gradient_accumulation,
            optimizer=OptimizerSettings(sft.lr, sft.weight_decay, steps, int(sft.warmup_ratio * steps), sft.grad_clip),
            strategy=sft.strategy,
            world_size=sft.world_size,
            zero_stage=sft.zero_stage,
            offload_optimizer=sft.offload_optimizer,
            resources={f"policy rank {r}": placement(config, "policy") for r in range(sft.world_size)},
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
    clip: float
    beta: float
    drop_no_signal: bool
    optimizer: OptimizerSettings
    rollout_workers: int
    use_vllm: bool
    resources: dict[str, dict[str, float]]

    @classmethod
    def from_config(cls, config: RecipeConfig) -> GRPOPlan:
        check_keys(config, "local", "sc_grpo")
        grpo = config.grpo
        init = grpo.init or config.model.path
        updates = grpo.steps * grpo.ppo_epochs * grpo.mini_batches
        workers = config.resources.num_rollout_workers
        return cls(
            run=run_plan(config, "sc_grpo", Path(grpo.output or Path(config.run_dir) / "sc_grpo"), grpo.steps),
            model=model_plan(config, init),
            init=init,
            records=training_records(
                config.grpo_records_path(), config.data.shots, need_response=False, key=config.grpo_records_key()
            ),
            prompts_per_step=grpo.prompts_per_step,
            group_size=grpo.group_size,
            sampling=SamplingConfig(grpo.max_new_tokens, True, grpo.temperature, grpo.top_p),
            ppo_epochs=grpo.ppo_epochs,
            mini_batches=grpo.mini_batches,
            clip=grpo.clip,
            beta=grpo.beta,
            drop_no_signal=grpo.drop_no_signal,
            optimizer=OptimizerSettings(grpo.lr, 0.0, updates, int(grpo.warmup_ratio * updates), grpo.grad_clip),
            rollout_workers=workers,
            use_vllm=config.resources.use_vllm,
            resources={
                "policy": placement(config, "policy"),
                "reference": placement(config, "reference"),
                **{f"rollout{i}": placement(config, "rollout") for i in range(workers)},
            },
        )


def model_plan(config: RecipeConfig, path: str) -> ModelPlan:
    check_model_dir(path)  # a clear error before Ray starts
    return ModelPlan(
        path=path,
        dtype=config.model.dtype,
        family=config.data.prompt,
        max_pixels=config.model.max_pixels,
        torch_threads=config.resources.torch_threads,
        gradient_checkpointing=config.model.gradient_checkpointing,
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
        )
    identity = {key: _plain(config.get(key)) for key in IDENTITY_KEYS[stage]}
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
    )


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def placement(config: RecipeConfig, actor: str) -> dict[str, float]:
    resources = getattr(config.resources, actor)
    return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}


def training_records(path: str, shots: int, need_response: bool, key: str = "data.train") -> list[Record]:
    """The training records (named by config `key`), shaped for `data.shots` (0: the query
    image only), with a clear error for a missing file, an empty one or missing targets."""
    hint = f"{MAKE_RECORDS}; then set {key}=DIR/records.jsonl"
    if not path:
        raise ValueError(f"{key} is not set in the config: {hint}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"training records not found: {path} ({key}); {hint}")
    records = load_records(path)
    if not records:
        raise ValueError(f"no records in {path}")
    if need_response:
        missing = [r.id for r in records if not r.response]
        if missing:
            raise ValueError(f"PA-SFT needs a 'response' on every record; {len(missing)} lack one (e.g. {missing[0]})")
    return shape_for_shots(records, shots, path)

"""One config for both recipes: YAML files in `recipes/configs/`, overridable from the
command line (`grpo.lr=1e-5 resources.rollout.num_gpus=1`), saved resolved beside the run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    path: str = ""  # the initial model (PA-SFT starts here)
    dtype: str = "float32"  # bfloat16 on GPUs, as the paper
    max_pixels: int | None = None  # the paper: 480000
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    train: str = ""
    grpo_train: str = ""  # SC-GRPO's prompts when they differ from PA-SFT's (default: train)
    eval: str = ""
    prompt: str = "train"  # prompt family for training (Table 8)
    eval_prompt: str = "train"
    shots: int = 0


@dataclass
class SFTConfig:
    output: str = ""
    epochs: float = 2.0
    batch_size: int = 32
    gradient_accumulation: int = 1
    lr: float = 1e-5
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora: bool = False  # the paper found full-parameter fine-tuning better
    # Data-parallel PA-SFT on the local backend: `world_size` policy ranks, each with
    # resources.policy; "ddp" (torch) or "deepspeed" (ZeRO `zero_stage`), or "none".
    strategy: str = "none"
    world_size: int = 1
    zero_stage: int = 2
    offload_optimizer: bool = False


@dataclass
class GRPOConfig:
    output: str = ""
    init: str = ""  # the PA-SFT checkpoint
    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 4
    ppo_epochs: int = 1
    mini_batches: int = 1
    lr: float = 1e-6
    warmup_ratio: float = 0.0
    clip: float = 0.2
    beta: float = 0.04
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    drop_no_signal: bool = False
    grad_clip: float = 1.0
    scorer: dict[str, Any] | str | None = None  # scorer config (grid, weights, vocabulary) or a path


@dataclass
class ActorResources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class ResourcesConfig:
    backend: str = "local"  # local Ray actors, or openrlhf
    policy: ActorResources = field(default_factory=ActorResources)
    reference: ActorResources = field(default_factory=lambda: ActorResources(0.5, 0.0))
    rollout: ActorResources = field(default_factory=lambda: ActorResources(0.5, 0.0))
    num_rollout_workers: int = 1
    torch_threads: int = 0  # 0: let torch decide
    use_vllm: bool = False
    # None: $RAY_ADDRESS (set by `ray job submit`), else a new local Ray; "local": always a new one
    ray_address: str | None = None


@dataclass
class CheckpointConfig:
    every: int = 50
    keep: int = 2


@dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 512


@dataclass
class OpenRLHFConfig:
    num_nodes: int = 1
    num_gpus_per_node: int = 4
    vllm_num_engines: int = 2
    vllm_tensor_parallel_size: int = 1
    vllm_gpu_memory_utilization: float = 0.6
    colocate_all: bool = True
    zero_stage: int = 2
    micro_train_batch_size: int = 2
    micro_rollout_batch_size: int = 4
    reward: str = "file"  # "file": rewards/openrlhf_reward.py; or the URL of a reward server
    max_len: int = 4096
    extra_args: list[str] = field(default_factory=list)


@dataclass
class RecipeConfig:
    run_dir: str = "runs/default"
    seed: int = 0
    backbone: str | None = None  # paper name, for reports (qwen2_5_vl_3b, …)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    openrlhf: OpenRLHFConfig = field(default_factory=OpenRLHFConfig)

    def grpo_records_path(self) -> str:
        """SC-GRPO's training records: `data.grpo_train`, else `data.train`."""
        return self.data.grpo_train or self.data.train

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: Any, where: str):
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"config: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown key(s) {sorted(unknown)} in {where or 'top level'}; known: {sorted(names)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        values[name] = _build(hint, value, path) if dataclasses.is_dataclass(hint) else _coerce(hint, value, path)
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Accept YAML/CLI values for simple types (1e-5 as text becomes a float, …)."""
    if value is None:
        return None
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return option(value) if option is float or float(value).is_integer() else value
        if option in (int, float) and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                continue
            return int(number) if option is int and number.is_integer() else number
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) in (list, dict) and isinstance(value, typing.get_origin(option)):
            return value
    raise ValueError(f"config: {where} = {value!r} is not a {hint}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`grpo.lr=1e-5` → (['grpo', 'lr'], 1e-5); the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """A config from a YAML file (or the defaults) with `section.key=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config must be a mapping")
        data = loaded
    for override in overrides or []:
        keys, value = parse_override(override)
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {key} is not a section")
        node[keys[-1]] = value
    return _build(RecipeConfig, data, "")


def save_config(config: RecipeConfig, path: str | Path) -> None:
    from ..data.records import atomic_open

    with atomic_open(path) as out:
        yaml.safe_dump(json.loads(json.dumps(config.to_dict())), out, sort_keys=False)


PATH_FIELDS = (
    ("run_dir",),
    ("model", "path"),
    ("data", "train"),
    ("data", "grpo_train"),
    ("data", "eval"),
    ("sft", "output"),
    ("grpo", "output"),
    ("grpo", "init"),
)


def resolve_paths(config: RecipeConfig, root: str | Path) -> RecipeConfig:
    """Make relative paths absolute against `root` (a Ray job runs in a copy of the
    working dir, so outputs must not land there)."""
    root = Path(root).resolve()
    scorer = config.grpo.scorer
    if isinstance(scorer, str) and scorer and not Path(scorer).is_absolute():
        config.grpo.scorer = str(root / scorer)  # a scorer config file, like every other path
    for keys in PATH_FIELDS:
        node = config
        for key in keys[:-1]:
            node = getattr(node, key)
        value = getattr(node, keys[-1])
        if value and not Path(value).is_absolute():
            setattr(node, keys[-1], str(root / value))
    return config

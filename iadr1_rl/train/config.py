"""One config for both recipes: YAML files in `recipes/configs/`, overridable from the
command line (`grpo.lr=1e-5 resources.rollout.num_gpus=1`), validated by pydantic and
saved resolved beside the run.

Every value is checked where it is read: integers refuse 4.5, ranges are enforced (a
group of at least 2, positive temperatures and learning rates, …), and an unknown key is
refused naming the nearest valid one. What each backend does with each key is in
`iadr1_rl/backends/keys.py`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..data.prompts import PROMPT_FAMILIES

PromptFamily = Literal[PROMPT_FAMILIES]  # type: ignore[valid-type]


class Section(BaseModel):
    """A config section: unknown keys are refused, every value is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    path: str = Field("", description="the initial model (PA-SFT starts here)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="bfloat16 on GPUs, as the paper")
    max_pixels: int | None = Field(None, gt=0, description="the paper: 480000")
    gradient_checkpointing: bool = False
    master_weights: bool = Field(
        True,
        description="the local policy's optimizer steps float32 copies of its dtype weights (bf16 updates at 1e-6 "
        "vanish; float16 also gets a loss scaler)",
    )


class DataConfig(Section):
    train: str = ""
    grpo_train: str = Field("", description="SC-GRPO's prompts when they differ from PA-SFT's (default: train)")
    eval: str = ""
    prompt: PromptFamily = Field("train", description="prompt family for training (Table 8)")
    eval_prompt: PromptFamily = "train"
    shots: Literal[0, 1] = Field(0, description="0: the query image only; 1: a normal reference first")


class PolicyRanks(Section):
    """How a stage's policy trains across devices on the local backend: `world_size` ranks,
    each with resources.policy; "ddp" (torch) or "deepspeed" (ZeRO `zero_stage`, the Adam
    state on the CPU with `offload_optimizer`), or "none" (one rank). The same engine for
    PA-SFT (`sft.*`) and SC-GRPO (`grpo.*`)."""

    strategy: Literal["none", "ddp", "deepspeed"] = "none"
    world_size: int = Field(1, ge=1)
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False

    @model_validator(mode="after")
    def _ranks_need_a_strategy(self) -> PolicyRanks:
        if self.strategy == "none" and self.world_size > 1:
            raise ValueError(
                f"world_size {self.world_size} needs strategy ddp or deepspeed (strategy none trains on one rank)"
            )
        return self


class SFTConfig(PolicyRanks):
    output: str = ""
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(32, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    lr: float = Field(1e-5, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    lora: bool = Field(False, description="refused: the paper found full-parameter fine-tuning better")


class GRPOConfig(PolicyRanks):
    output: str = ""
    init: str = Field("", description="the PA-SFT checkpoint")
    steps: int = Field(100, ge=1, description="rollout steps, each prompts_per_step prompts × group_size")
    prompts_per_step: int = Field(8, ge=1)
    group_size: int = Field(4, ge=2, description="G completions per prompt (a group of 1 has no advantage)")
    ppo_epochs: int = Field(1, ge=1)
    mini_batches: int = Field(1, ge=1)
    lr: float = Field(1e-6, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    clip: float = Field(0.2, gt=0)
    beta: float = Field(0.04, ge=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    drop_no_signal: bool = False
    grad_clip: float = Field(1.0, gt=0)
    scorer: dict[str, Any] | str | None = Field(None, description="scorer config (preset, grid, weights, …) or a path")


class ActorResources(Section):
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)


class HelperResources(ActorResources):
    """The reference's and each rollout worker's: half a CPU unless set (a section written in
    part, `resources.rollout.num_gpus=1`, keeps that default)."""

    num_cpus: float = Field(0.5, ge=0)


class ResourcesConfig(Section):
    backend: Literal["local", "openrlhf"] = "local"
    policy: ActorResources = Field(default_factory=ActorResources)
    reference: HelperResources = Field(default_factory=HelperResources)
    rollout: HelperResources = Field(default_factory=HelperResources)
    num_rollout_workers: int = Field(1, ge=1)
    num_reference_workers: int = Field(
        1, ge=1, description="reference actors sharing each step's log-probs (each holds the whole model)"
    )
    torch_threads: int = Field(0, ge=0, description="0: let torch decide")
    # None: $RAY_ADDRESS (set by `ray job submit`), else a new local Ray; "local": always a new one
    ray_address: str | None = None


class RolloutConfig(Section):
    """How the local backend's rollout workers sample (their placement: resources.rollout)."""

    engine: Literal["hf", "vllm"] = Field(
        "hf", description="hf: the model's own generate; vllm: a vLLM engine per worker (make install-vllm)"
    )
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="vllm on a GPU: its share of the GPU")
    kv_cache_gib: float | None = Field(
        None, gt=0, description="vllm: KV-cache size in GiB instead of a GPU share (on CPU: 1 when unset)"
    )
    max_model_len: int | None = Field(None, ge=1, description="vllm: the longest prompt + response (null: the model's)")
    enforce_eager: bool | None = Field(
        None, description="vllm: true: no CUDA graphs (faster start, slower steps); null: CUDA graphs on a GPU only"
    )
    sleep: bool = Field(False, description="vllm on a GPU: free its memory while the policy trains (colocation)")
    sleep_level: Literal[1, 2] = Field(
        1, description="with sleep: 1 keeps the weights in host memory; 2 drops them (the next sync refills them)"
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="vllm: GPUs per engine (resources.rollout.num_gpus the same, whole GPUs)"
    )
    weight_transport: Literal["auto", "object_store", "ipc", "nccl"] = Field(
        "auto",
        description="how syncs reach each worker: ipc beside a policy rank, nccl on other GPUs, object_store "
        "(host memory; the CPU's); auto: the first that can work",
    )
    max_logprob_gap: float = Field(
        1.0, gt=0, description="stop when the engine's log-probs differ from the policy's by more (mean per token)"
    )
    sync_timeout_s: float = Field(
        300.0, gt=0, description="a weight sync's bound: an engine or rank that does not answer in it stops the run"
    )


class MemoryConfig(Section):
    """How much one forward may hold, and what the memory plan checks against."""

    train_tokens: int = Field(
        16384, ge=1, description="the most padded tokens one training forward holds (the policy's micro-batches)"
    )
    logprob_tokens: int = Field(
        65536, ge=1, description="the same for forward-only passes (reference and old log-probs, rollout batches)"
    )
    device_gib: float | None = Field(
        None, gt=0, description="memory of one GPU the run is planned for; null: this machine's GPU"
    )
    gpus_per_node: int | None = Field(
        None, ge=1, description="GPUs of the node the run is planned for; null: this machine's (unchecked without)"
    )
    check: bool = Field(True, description="refuse a run whose memory plan does not fit; false: warn and start")


class CheckpointConfig(Section):
    every: int = Field(50, ge=1)
    keep: int = Field(2, ge=0, description="0: keep every checkpoint")


class ResilienceConfig(Section):
    """What a local SC-GRPO run survives (docs/training.md, "Faults")."""

    max_actor_restarts: int = Field(
        3, ge=0, description="new starts of one rollout worker or reference worker in a run; past it the run stops"
    )
    max_run_restarts: int = Field(
        2, ge=0, description="restarts from the last checkpoint in one command after a policy rank is lost"
    )
    call_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="the bound of every call a step waits on, and of an actor's start; an actor past it is treated "
        "as lost",
    )


class LogConfig(Section):
    """Trackers besides metrics.jsonl, TensorBoard and curves.png (`train/trackers.py`)."""

    to: list[Literal["wandb", "mlflow"]] = Field(
        default_factory=list, description="wandb (WANDB_MODE=offline: a local run folder) and/or mlflow"
    )
    project: str = Field("iadr1-rl", min_length=1, description="the W&B project and the MLflow experiment")
    mlflow_uri: str | None = Field(None, description="MLflow's tracking URI (null: a file: store, <output>/mlruns)")


class EvalConfig(Section):
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(512, ge=1)


class OpenRLHFConfig(Section):
    num_nodes: int = Field(1, ge=1)
    num_gpus_per_node: int = Field(4, ge=1)
    vllm_num_engines: int = Field(
        4, ge=1, description="with colocate_all: num_nodes × num_gpus_per_node / vllm_tensor_parallel_size"
    )
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.6, gt=0, le=1)
    colocate_all: bool = True
    zero_stage: Literal[0, 1, 2, 3] = 2
    micro_train_batch_size: int = Field(2, ge=1)
    micro_rollout_batch_size: int = Field(4, ge=1)
    reward: str = Field("file", description="'file': rewards/integrations/openrlhf.py; or the URL of a reward server")
    max_len: int = Field(4096, ge=1)
    extra_args: list[str] = Field(default_factory=list)


class RecipeConfig(Section):
    run_dir: str = "runs/default"
    seed: int = Field(0, ge=0)
    backbone: str | None = Field(None, description="paper name, for reports (qwen2_5_vl_3b, …)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    openrlhf: OpenRLHFConfig = Field(default_factory=OpenRLHFConfig)

    def grpo_records_key(self) -> str:
        """The key naming SC-GRPO's training records: `data.grpo_train` when set, else `data.train`."""
        return "data.grpo_train" if self.data.grpo_train else "data.train"

    def grpo_records_path(self) -> str:
        return self.get(self.grpo_records_key())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def get(self, key: str) -> Any:
        """The value of a dotted key (`grpo.lr`)."""
        node: Any = self
        for part in key.split("."):
            node = getattr(node, part)
        return node

    def plain(self, key: str) -> Any:
        """The value of a dotted key as plain data (a section as a dict), as checkpoints record it."""
        value = self.get(key)
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def config_keys(model: type[BaseModel] = RecipeConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config, leaves only (`grpo.lr`, `resources.policy.num_gpus`)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        if where in REPLACED_KEYS:
            return f"{where} was replaced: {REPLACED_KEYS[where]}"
        close = nearest_key(where)
        hint = f"; did you mean {close}?" if close else ""
        return f"unknown key {where}{hint}"
    if error["type"] == "value_error":  # a rule across keys: its message names them
        return f"{where}: {error['ctx']['error']}"
    return f"{where}: {error['msg'].lower()} (got {error.get('input')!r})"


# Keys an older config may still carry, and what took their place.
REPLACED_KEYS = {
    "resources.use_vllm": "the rollout engine is rollout.engine (hf or vllm)",
}

# The names other RL frameworks (TRL, OpenRLHF, verl) give our keys: a user coming from
# them types these first, and spelling similarity alone would suggest something else.
FRAMEWORK_NAMES = {
    "learning_rate": "lr",
    "n_samples_per_prompt": "group_size",
    "num_generations": "group_size",
    "rollout_n": "group_size",
    "kl_coef": "beta",
    "init_kl_coef": "beta",
    "eps_clip": "clip",
    "epsilon": "clip",
    "max_norm": "grad_clip",
    "max_grad_norm": "grad_clip",
    "max_completion_length": "max_new_tokens",
    "num_train_epochs": "epochs",
    "max_steps": "steps",
    "rollout_batch_size": "prompts_per_step",
}


def nearest_key(path: str) -> str | None:
    """The valid key a mistyped `path` most likely meant: its section's key under another
    framework's name, else the closest spelling."""
    section, _, leaf = path.rpartition(".")
    known = _known_paths()
    if leaf in FRAMEWORK_NAMES:
        candidates = [k for k in known if k.rpartition(".")[2] == FRAMEWORK_NAMES[leaf]]
        same_section = [k for k in candidates if k.rpartition(".")[0] == section]
        if same_section or candidates:
            return (same_section or candidates)[0]
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _known_paths() -> list[str]:
    """Every key and every section, dotted (`resources`, `resources.policy`, `resources.policy.num_cpus`)."""
    paths = {".".join(key.split(".")[:depth]) for key in config_keys() for depth in range(1, key.count(".") + 2)}
    return sorted(paths)


def build_config(data: dict[str, Any], source: str = "config") -> RecipeConfig:
    """Validate a mapping into a RecipeConfig; ValueError listing every problem."""
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise ValueError(f"{source}: {problems}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`grpo.lr=1e-5` → (['grpo', 'lr'], 1e-5); the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({error})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """A config from a YAML file (or the defaults) with `section.key=value` overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config must be a mapping")
        data, source = loaded or {}, str(path)
    for override in overrides or []:
        keys, value = parse_override(override)
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {key} is not a section")
        node[keys[-1]] = value
    return build_config(data, source)


def save_config(config: RecipeConfig, path: str | Path) -> None:
    from ..data.records import atomic_open

    with atomic_open(path) as out:
        yaml.safe_dump(config.to_dict(), out, sort_keys=False)


PATH_FIELDS = (
    "run_dir",
    "model.path",
    "data.train",
    "data.grpo_train",
    "data.eval",
    "sft.output",
    "grpo.output",
    "grpo.init",
)


def resolve_paths(config: RecipeConfig, root: str | Path) -> RecipeConfig:
    """Make relative paths absolute against `root` (a Ray job runs in a copy of the
    working dir, so outputs must not land there); a scorer config path likewise."""
    root = Path(root).resolve()
    keys = list(PATH_FIELDS) + (["grpo.scorer"] if isinstance(config.grpo.scorer, str) else [])
    for key in keys:
        section, _, name = key.rpartition(".")
        node = config.get(section) if section else config
        value = getattr(node, name)
        if value and not Path(value).is_absolute():
            setattr(node, name, str(root / value))
    return config

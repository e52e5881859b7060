"""What each backend does with every config key: honoured (and how), not applicable (and
why), or refused for a value it cannot honour.

`check_keys(config, backend, stage)` refuses, before anything starts, every value a
backend would otherwise ignore or get wrong; `table()` is the same knowledge as text for
the docs. The tests walk every key of every shipped config through both backends: an
honoured key changes what the backend does, a key that does not apply changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..train.config import RecipeConfig, config_keys

logger = logging.getLogger(__name__)

Refusal = Callable[[Any, RecipeConfig], str | None]


@dataclass(frozen=True)
class Handling:
    """One backend's handling of one key."""

    how: str  # what the backend does with it, or why it does not apply
    applies: bool = True
    refuse: Refusal | None = None  # a message for a value it cannot honour


def na(why: str) -> Handling:
    return Handling(why, applies=False)


def _refuse_when(condition: Callable[[Any, RecipeConfig], bool], message: str) -> Refusal:
    return lambda value, config: message if condition(value, config) else None


def _mini_batches_divide(value: int, config: RecipeConfig) -> str | None:
    samples = config.grpo.prompts_per_step * config.grpo.group_size
    if samples % value:
        return f"{samples} samples a step (prompts_per_step × group_size) do not split into {value} mini-batches"
    return _openrlhf_launch("grpo.mini_batches")(value, config)


def _openrlhf_launch(key: str) -> Refusal:
    """OpenRLHF's launch arithmetic (`openrlhf.launch_problems`), where it involves `key`."""

    def refuse(value: Any, config: RecipeConfig) -> str | None:
        from .openrlhf import launch_problems

        mine = [problem for problem in launch_problems(config) if key in problem]
        return "OpenRLHF would refuse to start: " + "; ".join(mine) if mine else None

    return refuse


def launch_key(how: str, key: str) -> Handling:
    return Handling(how, refuse=_openrlhf_launch(key))


# The policy's ranks, the same keys for both stages (`sft.*`, `grpo.*`).
RANKS = {
    "strategy": "data parallelism of the policy: none, ddp or deepspeed",
    "world_size": "policy ranks (each with resources.policy)",
    "zero_stage": "DeepSpeed ZeRO stage",
    "offload_optimizer": "DeepSpeed CPU offload of the Adam state and its step",
}

SFT_ONLY = "PA-SFT runs on the local backend (recipes/pa_sft.py), never in the OpenRLHF job"
PLACEMENT = "OpenRLHF places its actors by openrlhf.num_nodes, num_gpus_per_node, vllm_* and colocate_all"
NO_EVAL = (
    "the OpenRLHF job does not evaluate; the dry run prints the `iadr1-eval` line that evaluates its final "
    "checkpoint with the run's scorer"
)
OPENRLHF_ONLY = (
    "read by the OpenRLHF backend only; the local backend places its actors by resources.* and samples with rollout.*"
)

LOCAL: dict[str, Handling] = {
    "run_dir": Handling("output folder of a stage whose output is not set"),
    "seed": Handling("data order and sampling seeds: a resumed run continues as the uninterrupted one"),
    "backbone": Handling("the evaluation report draws the paper's figures for it"),
    "model.path": Handling("PA-SFT's initial model; SC-GRPO's too when grpo.init is empty"),
    "model.dtype": Handling("every actor's weights"),
    "model.max_pixels": Handling("every actor's image processor"),
    "model.gradient_checkpointing": Handling("the policy's training"),
    "model.master_weights": Handling(
        "the policy's optimizer steps float32 copies of its 16-bit weights, with a loss scaler for float16 "
        "(PA-SFT under DeepSpeed: DeepSpeed's own master copy); float16 without them is refused"
    ),
    "data.train": Handling("PA-SFT's records; SC-GRPO's when data.grpo_train is empty"),
    "data.grpo_train": Handling("SC-GRPO's prompts"),
    "data.eval": Handling("the evaluation of the final model"),
    "data.prompt": Handling("the prompt family of training"),
    "data.eval_prompt": Handling("the prompt family of the evaluation"),
    "data.shots": Handling("0: the query image only; 1: a normal reference first (training and evaluation)"),
    "sft.output": Handling("PA-SFT's output folder"),
    "sft.epochs": Handling("PA-SFT's length (steps = epochs × records / batch_size)"),
    "sft.batch_size": Handling("records per PA-SFT step"),
    "sft.gradient_accumulation": Handling("micro-batches per step"),
    "sft.lr": Handling("AdamW's learning rate"),
    "sft.warmup_ratio": Handling("linear warm-up, then cosine decay"),
    "sft.weight_decay": Handling("AdamW's weight decay"),
    "sft.grad_clip": Handling("gradient-norm clipping"),
    "sft.lora": Handling(
        "full-parameter fine-tuning only",
        refuse=_refuse_when(lambda v, c: v, "LoRA is not implemented: the paper found full-parameter PA-SFT better"),
    ),
    **{f"sft.{key}": Handling(how) for key, how in RANKS.items()},
    "grpo.output": Handling("SC-GRPO's output folder"),
    "grpo.init": Handling("the policy's start and the reference model"),
    "grpo.steps": Handling("rollout steps"),
    "grpo.prompts_per_step": Handling("prompts per step"),
    "grpo.group_size": Handling("completions per prompt (G)"),
    "grpo.ppo_epochs": Handling("updates over each step's samples"),
    "grpo.mini_batches": Handling("mini-batches per epoch"),
    "grpo.lr": Handling("AdamW's learning rate"),
    "grpo.warmup_ratio": Handling("linear warm-up, then cosine decay"),
    "grpo.clip": Handling("the PPO clip range"),
    "grpo.beta": Handling("the k3 KL penalty's weight"),
    "grpo.temperature": Handling("sampling, and every log-prob of the ratio and the KL"),
    "grpo.top_p": Handling("nucleus sampling"),
    "grpo.max_new_tokens": Handling("completion length"),
    "grpo.drop_no_signal": Handling("groups whose rewards are all equal are not trained on"),
    "grpo.grad_clip": Handling("gradient-norm clipping"),
    "grpo.scorer": Handling("the reward, the evaluation and scorer.json beside the run"),
    **{f"grpo.{key}": Handling(how) for key, how in RANKS.items()},
    "resources.backend": Handling("selects this backend"),
    "resources.policy.num_cpus": Handling("the policy actor's placement"),
    "resources.policy.num_gpus": Handling("the policy actor's placement"),
    "resources.reference.num_cpus": Handling("the reference actor's placement"),
    "resources.reference.num_gpus": Handling("the reference actor's placement"),
    "resources.rollout.num_cpus": Handling("each rollout actor's placement"),
    "resources.rollout.num_gpus": Handling("each rollout actor's placement"),
    "resources.num_rollout_workers": Handling("rollout actors sharing each step's prompts"),
    "resources.num_reference_workers": Handling("reference actors sharing each step's log-probs"),
    "resources.torch_threads": Handling("torch threads per actor"),
    "resources.ray_address": Handling("the Ray cluster to join"),
    "rollout.engine": Handling(
        "the rollout workers' engine: hf (the model's generate) or vllm (a vLLM engine per worker; make install-vllm)"
    ),
    "rollout.gpu_memory_utilization": Handling("vllm on a GPU: the engine's share of its GPU, and the memory plan"),
    "rollout.kv_cache_gib": Handling("vllm: the KV cache's size instead of a GPU share (on CPU 1 GiB when unset)"),
    "rollout.max_model_len": Handling("vllm: the longest prompt + response it holds (null: the model's)"),
    "rollout.enforce_eager": Handling("vllm: no CUDA graphs or compilation (null: CUDA graphs on a GPU, eager on CPU)"),
    "rollout.sleep": Handling("vllm on a GPU: the engine frees its memory while the policy trains"),
    "rollout.sleep_level": Handling(
        "with rollout.sleep: 1 keeps the weights in host memory while asleep, 2 drops them (the sync refills them)",
        refuse=_refuse_when(lambda v, c: v == 2 and not c.rollout.sleep, "sleep level 2 needs rollout.sleep=true"),
    ),
    "rollout.tensor_parallel_size": Handling(
        "vllm: each engine over this many GPUs (its worker's resources.rollout.num_gpus)",
        refuse=_refuse_when(
            lambda v, c: v > 1 and (c.rollout.engine != "vllm" or c.resources.rollout.num_gpus != v),
            "tensor parallelism needs rollout.engine=vllm and resources.rollout.num_gpus equal to it",
        ),
    ),
    "rollout.weight_transport": Handling(
        "how each sync reaches each worker (auto: ipc beside a policy rank, nccl to other GPUs, else object_store)",
        refuse=_refuse_when(
            lambda v, c: v in ("ipc", "nccl") and 0 in (c.resources.policy.num_gpus, c.resources.rollout.num_gpus),
            "ipc and nccl send from GPU to GPU: resources.policy.num_gpus and resources.rollout.num_gpus must be > 0",
        ),
    ),
    "rollout.max_logprob_gap": Handling("the run stops when the engine's log-probs stray further from the policy's"),
    "rollout.sync_timeout_s": Handling("a weight sync's bound: an actor that does not answer in it stops the run"),
    "memory.train_tokens": Handling("the policy's micro-batches: the most padded tokens one training forward holds"),
    "memory.logprob_tokens": Handling("the reference's and the old log-probs' forward passes, and the memory plan"),
    "memory.device_gib": Handling("the GPU memory the plan checks GPU actors against (null: this machine's)"),
    "memory.check": Handling("true: a run whose plan does not fit is refused before any model loads"),
    "memory.gpus_per_node": Handling("the GPUs the plan may place the actors on (null: this machine's)"),
    "checkpoint.every": Handling("steps between checkpoints"),
    "checkpoint.keep": Handling("checkpoints kept (0: all)"),
    "resilience.max_actor_restarts": Handling(
        "SC-GRPO: a lost rollout or reference worker is started again this many times (the step redone)"
    ),
    "resilience.max_run_restarts": Handling(
        "SC-GRPO: after a lost policy rank, the run goes on from its last checkpoint this many times"
    ),
    "resilience.call_timeout_s": Handling(
        "SC-GRPO: the bound of every call a step waits on, and of an actor's start (past it: lost)"
    ),
    "log.to": Handling("trackers fed the config, each step's metrics, restarts and the final artifacts"),
    "log.project": Handling("the W&B project and the MLflow experiment"),
    "log.mlflow_uri": Handling("MLflow's tracking URI (null: a file: store in the output folder)"),
    "eval.batch_size": Handling("generation batch of the evaluation"),
    "eval.max_new_tokens": Handling("completion length of the evaluation"),
    **{key: na(OPENRLHF_ONLY) for key in config_keys() if key.startswith("openrlhf.")},
}

OPENRLHF: dict[str, Handling] = {
    "run_dir": Handling("output folder when grpo.output is not set"),
    "seed": Handling("--train.seed"),
    "backbone": na(NO_EVAL),
    "model.path": Handling("--actor.model_name_or_path when grpo.init is empty"),
    "model.dtype": Handling(
        "--ds.param_dtype bf16 or fp16",
        refuse=_refuse_when(
            lambda v, c: v == "float32", "OpenRLHF trains in bf16 or fp16 with DeepSpeed: set model.dtype bfloat16"
        ),
    ),
    "model.max_pixels": Handling(
        "OpenRLHF reads the image processor from the checkpoint: the init checkpoint's max_pixels must match"
    ),
    "model.gradient_checkpointing": Handling("--actor.gradient_checkpointing_enable"),
    "model.master_weights": na("DeepSpeed keeps float32 master weights itself"),
    "data.train": Handling("exported as the prompt dataset when data.grpo_train is empty"),
    "data.grpo_train": Handling("exported as the prompt dataset (--data.prompt_dataset)"),
    "data.eval": na(NO_EVAL),
    "data.prompt": Handling("the prompt family of the exported prompts"),
    "data.eval_prompt": na(NO_EVAL),
    "data.shots": Handling("the exported images and --data.max_images_per_prompt"),
    **{key: na(SFT_ONLY) for key in config_keys() if key.startswith("sft.")},
    "grpo.output": Handling("--ckpt.path, --ckpt.output_dir, the exported prompts, scorer.json"),
    "grpo.init": Handling("--actor.model_name_or_path (the reference model too)"),
    "grpo.steps": Handling("--train.num_episodes × --data.max_samples: the same number of rollout steps"),
    "grpo.prompts_per_step": launch_key("--rollout.batch_size", "grpo.prompts_per_step"),
    "grpo.group_size": launch_key("--rollout.n_samples_per_prompt", "grpo.group_size"),
    "grpo.ppo_epochs": Handling("--train.max_epochs"),
    "grpo.mini_batches": Handling(
        "--train.batch_size = prompts_per_step × group_size / mini_batches", refuse=_mini_batches_divide
    ),
    "grpo.lr": Handling("--actor.adam.lr"),
    "grpo.warmup_ratio": Handling("--actor.lr_warmup_ratio"),
    "grpo.clip": Handling("--actor.eps_clip"),
    "grpo.beta": Handling("--algo.kl.init_coef, with --algo.kl.use_loss and the k3 estimator"),
    "grpo.temperature": Handling("--rollout.temperature (OpenRLHF divides its log-prob logits by it too)"),
    "grpo.top_p": Handling("--rollout.top_p"),
    "grpo.max_new_tokens": Handling("--rollout.max_new_tokens"),
    "grpo.drop_no_signal": Handling(
        "--algo.dynamic_filtering_enable with --algo.dynamic_filtering_range 0 1 over the scores (total / max): "
        "it drops groups whose mean score is 0 or 1, not groups of equal middling rewards (OpenRLHF #1270)"
    ),
    "grpo.grad_clip": Handling("--actor.max_norm"),
    **{
        f"grpo.{key}": na(f"OpenRLHF's policy ranks are openrlhf.* ({where})")
        for key, where in (
            ("strategy", "DeepSpeed always"),
            ("world_size", "openrlhf.num_nodes × openrlhf.num_gpus_per_node"),
            ("zero_stage", "openrlhf.zero_stage"),
            ("offload_optimizer", "openrlhf.extra_args: --ds.adam_offload"),
        )
    },
    "grpo.scorer": Handling("scorer.json beside the run, named by IADR1_SCORER_CONFIG in the job's environment"),
    "resources.backend": Handling("selects this backend"),
    **{
        f"resources.{actor}.{unit}": na(PLACEMENT)
        for actor in ("policy", "reference", "rollout")
        for unit in ("num_cpus", "num_gpus")
    },
    "resources.num_rollout_workers": na(PLACEMENT),
    "resources.num_reference_workers": na(PLACEMENT),
    "resources.torch_threads": na("throughput only; OpenRLHF sets its own threads"),
    "resources.ray_address": Handling("RAY_ADDRESS of OpenRLHF's driver"),
    "rollout.engine": na("OpenRLHF always samples with its vLLM engines (openrlhf.vllm_num_engines)"),
    **{
        f"rollout.{key}": na(f"OpenRLHF's vLLM settings are openrlhf.* ({where})")
        for key, where in (
            ("gpu_memory_utilization", "openrlhf.vllm_gpu_memory_utilization"),
            ("kv_cache_gib", "openrlhf.vllm_gpu_memory_utilization"),
            ("max_model_len", "openrlhf.max_len"),
            ("enforce_eager", "openrlhf.extra_args: --vllm.enforce_eager"),
            ("sleep", "openrlhf.colocate_all turns on its vLLM sleep"),
            ("sleep_level", "openrlhf.colocate_all turns on its vLLM sleep"),
            ("tensor_parallel_size", "openrlhf.vllm_tensor_parallel_size"),
        )
    },
    "rollout.weight_transport": na("OpenRLHF syncs its engines itself (NCCL, or CUDA IPC when colocated)"),
    "rollout.max_logprob_gap": na("the OpenRLHF backend does not compare its engines' log-probs with the policy's"),
    "rollout.sync_timeout_s": na("OpenRLHF syncs its engines itself"),
    **{
        key: na(
            "OpenRLHF's token-budget batches need sample packing, which it refuses for VLMs; its micro-batches "
            "are openrlhf.micro_train_batch_size and openrlhf.micro_rollout_batch_size"
        )
        for key in ("memory.train_tokens", "memory.logprob_tokens")
    },
    **{
        key: na("the memory plan is the local backend's")
        for key in ("memory.device_gib", "memory.check", "memory.gpus_per_node")
    },
    "checkpoint.every": Handling("--ckpt.save_steps"),
    "checkpoint.keep": Handling("--ckpt.max_num (0: every checkpoint)"),
    **{
        f"resilience.{key}": na("the local backend's: OpenRLHF's job ends when one of its actors is lost")
        for key in ("max_actor_restarts", "max_run_restarts", "call_timeout_s")
    },
    **{
        f"log.{key}": na("OpenRLHF logs with its own flags (openrlhf.extra_args: --logger.wandb_project …)")
        for key in ("to", "project", "mlflow_uri")
    },
    "eval.batch_size": na(NO_EVAL),
    "eval.max_new_tokens": na(NO_EVAL),
    "openrlhf.num_nodes": launch_key("--actor.num_nodes, --ref.num_nodes", "openrlhf.num_nodes"),
    "openrlhf.num_gpus_per_node": launch_key(
        "--actor.num_gpus_per_node, --ref.num_gpus_per_node", "openrlhf.num_gpus_per_node"
    ),
    "openrlhf.vllm_num_engines": launch_key("--vllm.num_engines", "openrlhf.vllm_num_engines"),
    "openrlhf.vllm_tensor_parallel_size": launch_key(
        "--vllm.tensor_parallel_size", "openrlhf.vllm_tensor_parallel_size"
    ),
    "openrlhf.vllm_gpu_memory_utilization": Handling("--vllm.gpu_memory_utilization"),
    "openrlhf.colocate_all": launch_key(
        "--train.colocate_all with --vllm.enable_sleep and --ds.enable_sleep", "openrlhf.colocate_all"
    ),
    "openrlhf.zero_stage": Handling("--ds.zero_stage"),
    "openrlhf.micro_train_batch_size": launch_key("--train.micro_batch_size", "openrlhf.micro_train_batch_size"),
    "openrlhf.micro_rollout_batch_size": launch_key("--rollout.micro_batch_size", "openrlhf.micro_rollout_batch_size"),
    "openrlhf.reward": Handling("--reward.remote_url: our reward file, or a reward server's URL"),
    "openrlhf.max_len": Handling("--data.max_len"),
    "openrlhf.extra_args": Handling("appended to the command as given"),
}

BACKENDS = {"local": LOCAL, "openrlhf": OPENRLHF}
# Keys a stage does not read (the local table covers both recipes).
STAGE_OF = {"sft.": "pa_sft", "grpo.": "sc_grpo", "rollout.": "sc_grpo", "resilience.": "sc_grpo"}


def _stage(key: str) -> str | None:
    return next((stage for prefix, stage in STAGE_OF.items() if key.startswith(prefix)), None)


def unapplied_keys(config: RecipeConfig, backend: str, stage: str) -> list[str]:
    """One line per key set away from its default that `backend` does not apply for `stage`,
    with what it uses instead (a config written for both backends sets some of each)."""
    defaults = RecipeConfig()
    lines = []
    for key, handling in BACKENDS[backend].items():
        if handling.applies or _stage(key) not in (None, stage):
            continue
        value = config.plain(key)
        if value != defaults.plain(key):
            lines.append(f"{key}={value!r} is not applied by the {backend} backend: {handling.how}")
    return lines


def check_keys(config: RecipeConfig, backend: str, stage: str) -> None:
    """Refuse, naming every key, the values `backend` cannot honour for `stage`; warn, one
    line each, of the keys set away from their defaults that it does not apply."""
    for line in unapplied_keys(config, backend, stage):
        logger.warning("%s", line)
    problems: dict[str, list[str]] = {}  # message → the keys it concerns (a rule across keys: once)
    for key, handling in BACKENDS[backend].items():
        if handling.refuse is None or _stage(key) not in (None, stage):
            continue
        message = handling.refuse(config.get(key), config)
        if message:
            problems.setdefault(message, []).append(f"{key}={config.get(key)!r}")
    if problems:
        text = "; ".join(f"{', '.join(keys)}: {message}" for message, keys in problems.items())
        raise ValueError(f"the {backend} backend cannot run this config: {text}")


def table() -> list[tuple[str, str, str]]:
    """(key, local, openrlhf) for every key, as the docs show it."""

    def text(handling: Handling) -> str:
        return handling.how if handling.applies else f"not applicable: {handling.how}"

    return [(key, text(LOCAL[key]), text(OPENRLHF[key])) for key in config_keys()]


def markdown() -> str:
    """`table()` as the Markdown table of docs/training.md (a test keeps the two equal)."""
    rows = ["| key | local backend | OpenRLHF backend |", "|---|---|---|"]
    rows += [f"| `{key}` | {local} | {openrlhf} |" for key, local, openrlhf in table()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())

"""The SC-GRPO recipe on OpenRLHF (≥ 0.10, dotted flags) across GPU nodes.

`recipes/sc_grpo.py --backend openrlhf` (or `resources.backend: openrlhf`) turns our
config into the arguments of `python -m openrlhf.cli.train_ppo_ray`: group-norm
advantages, G samples per prompt, the KL in the loss with the k3 estimator and our β,
the clip range, temperature, lengths, the VLM flags, the actor / reference / vLLM
resources and colocation, DeepSpeed ZeRO, bf16, checkpoints and logging; the reward is
our `rewards/openrlhf_reward.py` or the URL of our reward server. The training records
are exported to OpenRLHF's VLM prompt dataset first (with the label column the reward
reads). Only flags that OpenRLHF's own parser accepts are produced (the tests check it).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rewards import Scorer
from rewards.remote import RemoteScorer

from ..data.converters import to_openrlhf
from ..data.records import load_records, write_jsonl
from ..train.config import RecipeConfig, save_config
from .local import SCORER_FILE, run_scorer

logger = logging.getLogger(__name__)

REWARD_FILE = Path(__file__).resolve().parent.parent.parent / "rewards" / "openrlhf_reward.py"
MODULE = "openrlhf.cli.train_ppo_ray"
SCORER_CONFIG_ENV = "IADR1_SCORER_CONFIG"  # read by rewards/openrlhf_reward.py in every OpenRLHF actor
RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # how `ray job submit` hands the job's runtime env to its driver


@dataclass(frozen=True)
class OpenRLHFJob:
    command: list[str]
    prompt_data: Path
    output: Path
    scorer: Scorer
    env: dict[str, str] = field(default_factory=dict)  # what the job's actors need beyond the driver's

    def shell(self) -> str:
        return shlex.join(self.command)


def job_environment(extra: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """The environment of OpenRLHF's driver: `base` plus `extra`, and `extra` also in the Ray
    job's runtime env when one is given (under `ray job submit`), since actors on other nodes
    inherit that, not the driver's variables; OpenRLHF's `ray.init` merges it with its own."""
    env = {**base, **extra}
    if base.get(RAY_JOB_CONFIG):
        job = json.loads(base[RAY_JOB_CONFIG])
        runtime = job.get("runtime_env") or {}
        runtime["env_vars"] = {**(runtime.get("env_vars") or {}), **extra}
        job["runtime_env"] = runtime
        env[RAY_JOB_CONFIG] = json.dumps(job)
    return env


def check_reward_server(url: str, scorer: Scorer, timeout: float = 10.0) -> None:
    """A reward server must score with this run's configuration (its `/health` digest)."""
    RemoteScorer(url, timeout=timeout, attempts=1).check(scorer.digest)


def export_prompts(config: RecipeConfig, out_dir: Path) -> Path:
    """The training records as OpenRLHF's VLM prompt dataset (JSONL)."""
    records = load_records(config.grpo_records_path())
    if config.data.shots == 0:
        for record in records:
            record.images = record.images[-1:]
    path = out_dir / "openrlhf_prompts.jsonl"
    write_jsonl(to_openrlhf(records, config.data.prompt), path)
    return path


def reward_target(config: RecipeConfig) -> str:
    reward = config.openrlhf.reward
    if reward == "file":
        return str(REWARD_FILE)
    if reward.startswith(("http://", "https://")):
        return reward
    raise ValueError(f"openrlhf.reward must be 'file' or a reward server URL, got {reward!r}")


def build_arguments(config: RecipeConfig, prompt_data: Path, output: Path) -> list[str]:
    """The `train_ppo_ray` arguments for our config (OpenRLHF 0.11.x flag names)."""
    g, o = config.grpo, config.openrlhf
    rollout_batch = g.prompts_per_step  # prompts per rollout step
    train_batch = g.prompts_per_step * g.group_size // max(1, g.mini_batches)
    args = [
        "--actor.model_name_or_path",
        g.init or config.model.path,
        "--reward.remote_url",
        reward_target(config),
        "--data.prompt_dataset",
        str(prompt_data),
        "--data.input_key",
        "prompt",
        "--data.label_key",
        "label",
        "--data.image_key",
        "images",
        "--data.apply_chat_template",
        "--data.max_images_per_prompt",
        str(2 if config.data.shots == 1 else 1),
        "--data.max_len",
        str(o.max_len),
        "--rollout.max_new_tokens",
        str(g.max_new_tokens),
        "--rollout.n_samples_per_prompt",
        str(g.group_size),
        "--rollout.batch_size",
        str(rollout_batch),
        "--rollout.micro_batch_size",
        str(o.micro_rollout_batch_size),
        "--rollout.temperature",
        str(g.temperature),
        "--rollout.top_p",
        str(g.top_p),
        "--train.batch_size",
        str(train_batch),
        "--train.micro_batch_size",
        str(o.micro_train_batch_size),
        "--train.max_epochs",
        str(g.ppo_epochs),
        "--train.num_episodes",
        "1",
        "--train.seed",
        str(config.seed),
        "--algo.advantage.estimator",
        "group_norm",
        "--algo.kl.use_loss",
        "--algo.kl.estimator",
        "k3",
        "--algo.kl.init_coef",
        str(g.beta),
        "--actor.eps_clip",
        str(g.clip),
        "--actor.loss_agg_mode",
        "token-mean",
        "--actor.adam.lr",
        str(g.lr),
        "--actor.max_norm",
        str(g.grad_clip),
        "--actor.lr_warmup_ratio",
        str(g.warmup_ratio),
        "--actor.num_nodes",
        str(o.num_nodes),
        "--actor.num_gpus_per_node",
        str(o.num_gpus_per_node),
        "--ref.num_nodes",
        str(o.num_nodes),
        "--ref.num_gpus_per_node",
        str(o.num_gpus_per_node),
        "--vllm.num_engines",
        str(o.vllm_num_engines),
        "--vllm.tensor_parallel_size",
        str(o.vllm_tensor_parallel_size),
        "--vllm.gpu_memory_utilization",
        str(o.vllm_gpu_memory_utilization),
        "--ds.zero_stage",
        str(o.zero_stage),
        "--ds.param_dtype",
        "bf16" if config.model.dtype == "bfloat16" else "fp16",
        "--ckpt.path",
        str(output / "checkpoints"),
        "--ckpt.output_dir",
        str(output / "final"),
        "--ckpt.save_steps",
        str(config.checkpoint.every),
        "--ckpt.max_num",
        str(max(1, config.checkpoint.keep)),
        "--ckpt.save_hf",
        "--ckpt.load_enable",  # resume from the latest checkpoint when there is one
        "--logger.logging_steps",
        "1",
        "--logger.tensorboard_dir",
        str(output / "tensorboard"),
    ]
    if o.colocate_all:
        args += ["--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep"]
    if config.model.gradient_checkpointing:
        args.append("--actor.gradient_checkpointing_enable")
    return args + list(o.extra_args)


def prepare(config: RecipeConfig, python: str = sys.executable) -> OpenRLHFJob:
    """Export the prompts, save the run's scorer config and build the command (writes only
    under the output folder)."""
    output = Path(config.grpo.output or Path(config.run_dir) / "sc_grpo")
    output.mkdir(parents=True, exist_ok=True)
    scorer = run_scorer(config, output)
    prompt_data = export_prompts(config, output)
    command = [python, "-m", MODULE, *build_arguments(config, prompt_data, output)]
    save_config(config, output / "config.yaml")
    return OpenRLHFJob(command, prompt_data, output, scorer, {SCORER_CONFIG_ENV: str(output / SCORER_FILE)})


def run(config: RecipeConfig, dry_run: bool = False) -> int:
    """Run OpenRLHF as this Ray job's driver (or print the command with `dry_run`)."""
    job = prepare(config)
    target = reward_target(config)
    if dry_run:
        print(job.shell())
        for key, value in job.env.items():
            print(f"environment: {key}={value}")
        print(f"scorer: {job.scorer.preset} preset, digest {job.scorer.digest}")
        print(f"prompt data: {job.prompt_data}")
        print(f"output: {job.output}")
        return 0
    if target.startswith(("http://", "https://")):
        check_reward_server(target, job.scorer)
    logger.info("starting OpenRLHF: %s", job.shell())
    return subprocess.run(job.command, env=job_environment(job.env, os.environ)).returncode

"""The SC-GRPO recipe on OpenRLHF (≥ 0.10, dotted flags) across GPU nodes.

`recipes/sc_grpo.py --backend openrlhf` (or `resources.backend: openrlhf`) turns our
config into the arguments of `python -m openrlhf.cli.train_ppo_ray`, as `keys.py` says
for every key (a value OpenRLHF cannot honour is refused before anything starts): the
run's length, group-norm advantages, G samples per prompt, the KL in the loss with the
k3 estimator, the clip range, temperature, lengths, the dynamic filter for groups without
signal, the VLM flags, the actor / reference / vLLM resources and colocation, DeepSpeed
ZeRO, bf16, checkpoints and logging. The reward is our `rewards/integrations/openrlhf.py` (with
the run's scorer config handed to every actor) or the URL of our reward server (checked
to score with the same config). The training records are exported to OpenRLHF's VLM
prompt dataset first. Only flags that OpenRLHF's own parser accepts are produced (the
tests check it).
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

from rewards import SCORER_CONFIG_ENV, Scorer
from rewards.remote import RemoteScorer

from ..data.converters import to_openrlhf
from ..data.records import write_jsonl
from ..train.config import RecipeConfig, save_config
from .evaluation import SCORER_FILE, run_scorer
from .keys import check_keys
from .signals import Stopped, stop_on_signals
from .training_records import training_records

logger = logging.getLogger(__name__)

REWARD_FILE = Path(__file__).resolve().parent.parent.parent / "rewards" / "integrations" / "openrlhf.py"
MODULE = "openrlhf.cli.train_ppo_ray"
RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # how `ray job submit` hands the job's runtime env to its driver


@dataclass(frozen=True)
class RunLength:
    """grpo.steps as OpenRLHF counts: `episodes` passes over `prompts` prompts, each pass
    `steps_per_episode` rollout steps of `batch` prompts."""

    episodes: int
    prompts: int
    batch: int

    @property
    def steps_per_episode(self) -> int:
        return self.prompts // self.batch

    @classmethod
    def for_steps(cls, steps: int, batch: int, available: int) -> RunLength:
        """The fewest episodes over at most `available` prompts that make exactly `steps`
        rollout steps of `batch` prompts (OpenRLHF runs whole episodes over its data)."""
        if available < batch:
            raise ValueError(f"grpo.prompts_per_step {batch} is more than the {available} training records")
        per_episode_max = available // batch
        episodes = next(e for e in range(1, steps + 1) if steps % e == 0 and steps // e <= per_episode_max)
        return cls(episodes, steps // episodes * batch, batch)

    def describe(self, updates_per_step: int) -> str:
        steps = self.episodes * self.steps_per_episode
        return (
            f"{self.episodes} episode(s) × {self.steps_per_episode} rollout steps of {self.batch} prompts = "
            f"{steps} steps, {steps * updates_per_step} policy updates"
        )


@dataclass(frozen=True)
class OpenRLHFJob:
    command: list[str]
    prompt_data: Path
    output: Path
    scorer: Scorer
    length: RunLength
    env: dict[str, str] = field(default_factory=dict)  # what the job's actors need beyond the driver's
    notes: list[str] = field(default_factory=list)

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


def check_max_pixels(config: RecipeConfig) -> str | None:
    """OpenRLHF reads the image processor from the checkpoint: its max_pixels must be ours.
    A note when the checkpoint is not there yet (a dry run before PA-SFT)."""
    init = Path(config.grpo.init or config.model.path)
    processor_files = [init / "preprocessor_config.json", init / "processor_config.json"]
    found = next((path for path in processor_files if path.is_file()), None)
    if found is None:
        return f"model.max_pixels: {init} has no processor config yet; it is checked when the job starts"
    settings = json.loads(found.read_text())
    settings = settings.get("image_processor", settings)
    theirs = settings.get("max_pixels") or (settings.get("size") or {}).get("longest_edge")
    if config.model.max_pixels is not None and theirs != config.model.max_pixels:
        raise ValueError(
            f"model.max_pixels={config.model.max_pixels} but the processor of {init} has {theirs}, and OpenRLHF "
            "reads it from there: set model.max_pixels to match, or save the checkpoint with ours (PA-SFT does)"
        )
    return None


def export_prompts(config: RecipeConfig, out_dir: Path) -> tuple[Path, int]:
    """The training records as OpenRLHF's VLM prompt dataset (JSONL), and how many."""
    path, key = config.grpo_records_path(), config.grpo_records_key()
    records = training_records(path, config.data.shots, need_response=False, key=key)
    out = out_dir / "openrlhf_prompts.jsonl"
    return out, write_jsonl(to_openrlhf(records, config.data.prompt), out)


def reward_target(config: RecipeConfig) -> str:
    reward = config.openrlhf.reward
    if reward == "file":
        return str(REWARD_FILE)
    if reward.startswith(("http://", "https://")):
        return reward
    raise ValueError(f"openrlhf.reward must be 'file' or a reward server URL, got {reward!r}")


def build_arguments(config: RecipeConfig, prompt_data: Path, output: Path, length: RunLength) -> list[str]:
    """The `train_ppo_ray` arguments for our config (OpenRLHF 0.11.x flag names)."""
    g, o = config.grpo, config.openrlhf
    flags = {
        "--actor.model_name_or_path": g.init or config.model.path,
        "--reward.remote_url": reward_target(config),
        "--data.prompt_dataset": prompt_data,
        "--data.input_key": "prompt",
        "--data.label_key": "label",
        "--data.image_key": "images",
        "--data.max_images_per_prompt": 2 if config.data.shots == 1 else 1,
        "--data.max_len": o.max_len,
        "--data.max_samples": length.prompts,
        "--train.num_episodes": length.episodes,
        "--rollout.max_new_tokens": g.max_new_tokens,
        "--rollout.n_samples_per_prompt": g.group_size,
        "--rollout.batch_size": g.prompts_per_step,
        "--rollout.micro_batch_size": o.micro_rollout_batch_size,
        "--rollout.temperature": g.temperature,
        "--rollout.top_p": g.top_p,
        "--train.batch_size": g.prompts_per_step * g.group_size // g.mini_batches,
        "--train.micro_batch_size": o.micro_train_batch_size,
        "--train.max_epochs": g.ppo_epochs,
        "--train.seed": config.seed,
        "--algo.advantage.estimator": "group_norm",
        "--algo.kl.estimator": "k3",
        "--algo.kl.init_coef": g.beta,
        "--actor.eps_clip": g.clip,
        "--actor.loss_agg_mode": "token-mean",
        "--actor.adam.lr": g.lr,
        "--actor.max_norm": g.grad_clip,
        "--actor.lr_warmup_ratio": g.warmup_ratio,
        "--actor.num_nodes": o.num_nodes,
        "--actor.num_gpus_per_node": o.num_gpus_per_node,
        "--ref.num_nodes": o.num_nodes,
        "--ref.num_gpus_per_node": o.num_gpus_per_node,
        "--vllm.num_engines": o.vllm_num_engines,
        "--vllm.tensor_parallel_size": o.vllm_tensor_parallel_size,
        "--vllm.gpu_memory_utilization": o.vllm_gpu_memory_utilization,
        "--ds.zero_stage": o.zero_stage,
        "--ds.param_dtype": "bf16" if config.model.dtype == "bfloat16" else "fp16",
        "--ckpt.path": output / "checkpoints",
        "--ckpt.output_dir": output / "final",
        "--ckpt.save_steps": config.checkpoint.every,
        # keep 0 (every checkpoint) is at most one per `every` steps
        "--ckpt.max_num": config.checkpoint.keep or g.steps // config.checkpoint.every + 1,
        "--logger.logging_steps": 1,
        "--logger.tensorboard_dir": output / "tensorboard",
    }
    args = [item for flag, value in flags.items() for item in (flag, str(value))]
    switches = ["--data.apply_chat_template", "--algo.kl.use_loss", "--ckpt.save_hf", "--ckpt.load_enable"]
    if g.drop_no_signal:  # the reward file's scores are total / max, in [0, 1]
        switches += ["--algo.dynamic_filtering_enable", "--algo.dynamic_filtering_range", "0", "1"]
    if o.colocate_all:
        switches += ["--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep"]
    if config.model.gradient_checkpointing:
        switches.append("--actor.gradient_checkpointing_enable")
    return args + switches + list(o.extra_args)


def launch_problems(config: RecipeConfig) -> list[str]:
    """What OpenRLHF 0.11.2 (and the DeepSpeed it runs) would assert at launch from the
    arguments alone, each naming the keys to change; empty when it starts (`keys.py` refuses
    a config with any, naming them, before anything starts).

    From `openrlhf/cli/train_ppo_ray.py` (`train` and its argument checks) and DeepSpeed's
    batch check (`deepspeed/runtime/config.py::_batch_assertion`, run by the actor's and the
    reference's engines): with `--train.colocate_all` the vLLM engines take exactly the
    actor's GPUs; the rollout's sample batches cover every actor rank; DeepSpeed's training
    batch is a whole number of micro-batches on every rank."""
    o, g = config.openrlhf, config.grpo
    actor_gpus = o.num_nodes * o.num_gpus_per_node
    engine_gpus = o.vllm_num_engines * o.vllm_tensor_parallel_size
    problems = []
    if o.colocate_all and actor_gpus != engine_gpus:
        problems.append(
            f"with openrlhf.colocate_all the vLLM engines share the actor's GPUs exactly: openrlhf.num_nodes × "
            f"openrlhf.num_gpus_per_node = {o.num_nodes} × {o.num_gpus_per_node} = {actor_gpus} must equal "
            f"openrlhf.vllm_num_engines × openrlhf.vllm_tensor_parallel_size = {o.vllm_num_engines} × "
            f"{o.vllm_tensor_parallel_size} = {engine_gpus} (e.g. openrlhf.vllm_num_engines="
            f"{max(1, actor_gpus // o.vllm_tensor_parallel_size)})"
        )
    batches = g.group_size * g.prompts_per_step // o.micro_rollout_batch_size
    if batches < actor_gpus:
        problems.append(
            f"grpo.prompts_per_step × grpo.group_size / openrlhf.micro_rollout_batch_size = {batches} sample batches "
            f"a step, fewer than the {actor_gpus} actor ranks: lower openrlhf.micro_rollout_batch_size or raise "
            "grpo.prompts_per_step"
        )
    train_batch = g.prompts_per_step * g.group_size // g.mini_batches
    per_step = o.micro_train_batch_size * actor_gpus
    if train_batch % per_step:
        problems.append(
            f"DeepSpeed trains {train_batch} samples an update (grpo.prompts_per_step × grpo.group_size / "
            f"grpo.mini_batches) in micro-batches of openrlhf.micro_train_batch_size {o.micro_train_batch_size} on "
            f"each of {actor_gpus} ranks: {train_batch} is not a multiple of {per_step}"
        )
    return problems


def prepare(config: RecipeConfig, python: str = sys.executable) -> OpenRLHFJob:
    """Check the config (its keys, OpenRLHF's launch arithmetic among them), export the
    prompts, save the run's scorer config and build the command (writes only under the
    output folder)."""
    check_keys(config, "openrlhf", "sc_grpo")
    notes = [note for note in [check_max_pixels(config)] if note]
    output = Path(config.grpo.output or Path(config.run_dir) / "sc_grpo")
    output.mkdir(parents=True, exist_ok=True)
    scorer = run_scorer(config, output)
    prompt_data, available = export_prompts(config, output)
    length = RunLength.for_steps(config.grpo.steps, config.grpo.prompts_per_step, available)
    command = [python, "-m", MODULE, *build_arguments(config, prompt_data, output, length)]
    save_config(config, output / "config.yaml")
    env = {SCORER_CONFIG_ENV: str(output / SCORER_FILE)}
    if config.resources.ray_address:
        env["RAY_ADDRESS"] = config.resources.ray_address
    return OpenRLHFJob(command, prompt_data, output, scorer, length, env, notes)


def describe(job: OpenRLHFJob, config: RecipeConfig) -> list[str]:
    """What the dry run prints beside the command."""
    g = config.grpo
    lines = [f"environment: {key}={value}" for key, value in job.env.items()]
    lines.append(f"length: {job.length.describe(g.ppo_epochs * g.mini_batches)}")
    if g.drop_no_signal:
        lines.append(
            "filter: groups whose mean score (total / max) is 0 or 1 are dropped and replaced by fresh prompts "
            "(OpenRLHF's dynamic filter); groups of equal middling rewards are kept (OpenRLHF #1270)"
        )
        lines.append(
            "filter: replacements come from the same episode's prompts, so an episode may end in fewer steps than "
            "the length above; the pass rate is logged as dynamic_filtering_pass_rate"
        )
    lines.append(f"scorer: {job.scorer.preset} preset, digest {job.scorer.digest}")
    lines.append(f"prompt data: {job.prompt_data}")
    lines.append(f"output: {job.output}")
    if config.data.eval:
        predictions = job.output / "eval" / "predictions.jsonl"
        run_eval = f"iadr1-eval run --model {job.output / 'final'} --data {config.data.eval} "
        run_eval += f"--shots {config.data.shots} --prompt {config.data.eval_prompt} --out {predictions}"
        score = f"iadr1-eval score {predictions} --json {job.output / 'eval' / 'eval.json'}"
        lines.append(f"evaluate after: {run_eval} && {score} --scorer {job.output / SCORER_FILE}")
    return lines + [f"note: {note}" for note in job.notes]


def run(config: RecipeConfig, dry_run: bool = False) -> int:
    """Run OpenRLHF as this Ray job's driver (or print the command with `dry_run`): its
    exit code; 2 with a message for a config it cannot run; 128 + signal when stopped."""
    stop_on_signals()
    try:
        job = prepare(config)
        if dry_run:
            print(job.shell())
            print("\n".join(describe(job, config)))
            return 0
        if job.notes:
            check_max_pixels(config)  # the checkpoint must be there now
        target = reward_target(config)
        if target.startswith(("http://", "https://")):
            check_reward_server(target, job.scorer)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logger.info("starting OpenRLHF: %s", job.shell())
    process = subprocess.Popen(job.command, env=job_environment(job.env, os.environ))
    try:
        return process.wait()
    except Stopped as stop:  # pass the stop on, give OpenRLHF time to free its Ray actors
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        return 128 + stop.signum

"""The evaluation after a local run, generated where the run trained: in a Ray actor with the
GPU the training had (once the training actors are released), with the run's rollout engine
for SC-GRPO (vLLM when `rollout.engine=vllm`), greedy. The driver reads the records and
their images, encodes the prompts, and writes the predictions (resumable, with progress);
the actor only generates, as a rollout worker does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from ...actors import RolloutActor
from ...data.records import Record
from ...models.encoding import encode_prompts
from ...models.processor import load_processor
from ...rollout import sample_seeds
from ...train.config import RecipeConfig
from ..evaluation import EvalPlan
from . import ray_env

logger = logging.getLogger(__name__)


def evaluation_placement(config: RecipeConfig, stage: str) -> dict[str, Any]:
    """The evaluation's engine, its options and its actor's resources: SC-GRPO's rollout
    engine with the rollout worker's resources, PA-SFT's model on the policy's; GPUs the
    larger of the two actors' shares (an evaluation never lands on the CPU after training on
    a GPU).

    >>> from iadr1_rl.train.config import load_config
    >>> gpu = ["resources.policy.num_gpus=1", "resources.rollout.num_gpus=0.5", "rollout.engine=vllm"]
    >>> placed = evaluation_placement(load_config(None, gpu), "sc_grpo")
    >>> placed["engine"], placed["resources"]
    ('vllm', {'num_cpus': 0.5, 'num_gpus': 1.0})
    >>> evaluation_placement(load_config(None, gpu), "pa_sft")["engine"]
    'hf'
    """
    from .plan import rollout_options

    resources = config.resources
    num_gpus = max(resources.policy.num_gpus, resources.rollout.num_gpus)
    if stage == "sc_grpo":
        # Awake throughout: it samples batch after batch with no sync between (sleep level 2 would drop its weights).
        options = {**rollout_options(config), "sleep": False} if config.rollout.engine == "vllm" else {}
        engine, num_cpus = config.rollout.engine, resources.rollout.num_cpus
    else:
        engine, options, num_cpus = "hf", {}, resources.policy.num_cpus
    return {"engine": engine, "engine_options": options, "resources": {"num_cpus": num_cpus, "num_gpus": num_gpus}}


class ActorGenerator:
    """Greedy completions of records from the model in `model_dir`, generated in a Ray actor
    placed as `plan` says; `close()` frees it."""

    def __init__(self, plan: EvalPlan, model_dir: str | Path) -> None:
        self.plan = plan
        self.processor = load_processor(model_dir)
        self.actor = ray_env.remote(RolloutActor, plan.resources).remote(
            model_path=str(model_dir),
            engine=plan.engine,
            dtype=plan.dtype,
            torch_threads=plan.torch_threads,
            engine_options=plan.engine_options,
        )
        self.where = ray.get(self.actor.describe.remote())
        logger.info("evaluating %s with the %s engine on %s", model_dir, plan.engine, self.where["device"])

    def __call__(self, records: list[Record]) -> list[str]:
        prompts = encode_prompts(self.processor, records, self.plan.prompt)
        seeds = sample_seeds(0, 0, range(len(prompts)), 1)  # greedy: one completion each
        groups = ray.get(self.actor.generate.remote(prompts, self.plan.sampling, seeds))
        return [group[0].text for group in groups]

    def close(self) -> None:
        ray.kill(self.actor)

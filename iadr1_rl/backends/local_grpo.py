"""SC-GRPO on the local backend: rollout workers sample G completions per prompt, the
scorer rewards each group, the reference model gives the KL anchor, the policy takes
the PPO-clipped step, and its weights flow back to the rollout workers."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from ..actors import PolicyActor, ReferenceActor, RolloutActor
from ..eval.compare import fitted_rise
from ..models.generation import SamplingConfig
from ..train.checkpoint import latest_checkpoint, read_state
from ..train.config import RecipeConfig, save_config
from ..train.data_order import batch_at
from ..train.run_log import RunLogger
from ..train.sequences import Sample
from . import ray_env
from .local import actor_kwargs, finish, maybe_checkpoint, resources, run_scorer, training_records

logger = logging.getLogger(__name__)

GRPO_CURVES = [
    "reward_total",
    "reward_normalised",
    "reward_accuracy",
    "reward_location",
    "reward_type",
    "reward_consistency",
    "kl",
    "loss",
    "clip_fraction",
    "response_length",
    "groups_without_signal",
    "location_accuracy",
    "samples_per_second",
]


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def reward_metrics(scores, labels_anomalous: list[bool]) -> dict[str, float]:
    """Mean and std of every reward part and the total, plus task accuracies.

    `reward_normalised` is each completion's total over the most its label allows (4 for an
    anomaly, 2 for a normal item): unlike the total, its mean does not swing with how many
    of the step's prompts happen to be anomalous."""
    metrics: dict[str, float] = {}
    for part in ("consistency", "accuracy", "location", "type", "total", "normalised"):
        mean, std = _mean_std([getattr(s, part) for s in scores])
        metrics[f"reward_{part}"], metrics[f"reward_{part}_std"] = mean, std
    anomalous = [s for s, a in zip(scores, labels_anomalous) if a]
    metrics["answer_accuracy"] = metrics["reward_accuracy"]
    if anomalous:
        metrics["location_accuracy"] = statistics.fmean(s.location for s in anomalous)
        metrics["type_score"] = statistics.fmean(s.type for s in anomalous)
    return metrics


def _fitted_rise(rows: list[dict], metric: str) -> dict | None:
    values = [row[metric] for row in rows]
    return fitted_rise(metric, values).to_json() if len(values) >= 3 else None


def run_grpo(config: RecipeConfig, resume: bool = False, progress: bool = True, run_eval: bool = True) -> dict:
    import ray

    grpo = config.grpo
    out = Path(grpo.output or Path(config.run_dir) / "sc_grpo")
    init = grpo.init or config.model.path
    records = training_records(config.grpo_records_path(), need_response=False)
    latest = latest_checkpoint(out) if resume else None
    start_step = read_state(latest)["step"] if latest else 0
    current = str(latest) if latest else init
    reference_kwargs = actor_kwargs(config, init)
    policy_kwargs = actor_kwargs(config, current)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    scorer = run_scorer(config, out)

    ray_env.connect(config.resources.ray_address)
    workers = config.resources.num_rollout_workers
    ray_env.check_resources(
        {
            "policy": resources(config.resources.policy),
            "reference": resources(config.resources.reference),
            **{f"rollout{i}": resources(config.resources.rollout) for i in range(workers)},
        }
    )
    updates = grpo.steps * grpo.ppo_epochs * grpo.mini_batches
    policy = ray_env.remote(PolicyActor, resources(config.resources.policy)).remote(
        **policy_kwargs,
        lr=grpo.lr,
        total_steps=updates,
        warmup_steps=int(grpo.warmup_ratio * updates),
        grad_clip=grpo.grad_clip,
        gradient_checkpointing=config.model.gradient_checkpointing,
    )
    reference = ray_env.remote(ReferenceActor, resources(config.resources.reference)).remote(**reference_kwargs)
    rollout_cls = ray_env.remote(RolloutActor, resources(config.resources.rollout))
    rollouts = [rollout_cls.remote(**policy_kwargs, use_vllm=config.resources.use_vllm) for _ in range(workers)]
    ray.get([policy.ready.remote(), reference.ready.remote(), *[r.ready.remote() for r in rollouts]])
    actors = [policy, reference, *rollouts]
    try:
        if latest:
            ray.get(policy.load_training_state.remote(str(latest)))
            logger.info("resumed SC-GRPO from %s (step %d)", latest, start_step)

        sampling = SamplingConfig(
            max_new_tokens=grpo.max_new_tokens, do_sample=True, temperature=grpo.temperature, top_p=grpo.top_p
        )
        log = RunLogger(out, resume_step=start_step)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=grpo.steps, initial=start_step, desc="SC-GRPO", unit="step")
        started = time.perf_counter()
        for step in range(start_step, grpo.steps):
            times: dict[str, float] = {}
            tick = time.perf_counter()
            prompts = batch_at(records, step, grpo.prompts_per_step, config.seed)
            shards = [prompts[i::workers] for i in range(workers)]
            seed = config.seed * 1_000_003 + step
            results = ray.get(
                [
                    w.generate.remote(s, grpo.group_size, sampling, seed + i)
                    for i, (w, s) in enumerate(zip(rollouts, shards))
                    if s
                ]
            )
            groups: list[tuple] = []  # (record, rollouts of its group)
            for shard, shard_rollouts in zip(shards, results):
                for index, record in enumerate(shard):
                    groups.append((record, [r for r in shard_rollouts if r.prompt_index == index]))
            times["time_rollout"] = time.perf_counter() - tick

            tick = time.perf_counter()
            samples, advantages, scores, anomalous = [], [], [], []
            no_signal = 0
            for record, group in groups:
                scored = scorer.score_group([r.text for r in group], record.label)
                scores.extend(scored.scores)
                anomalous.extend([record.answer == "yes"] * len(group))
                if not scored.has_signal:
                    no_signal += 1
                    if grpo.drop_no_signal:
                        continue
                samples.extend(Sample(record, r.token_ids) for r in group)
                advantages.extend(scored.advantages)
            times["time_reward"] = time.perf_counter() - tick

            metrics = reward_metrics(scores, anomalous)
            lengths = [len(r.token_ids) for _, group in groups for r in group]
            metrics.update(
                response_length=statistics.fmean(lengths),
                truncated=statistics.fmean(float(r.truncated) for _, group in groups for r in group),
                groups_without_signal=no_signal,
                samples_trained=len(samples),
            )
            if samples:
                tick = time.perf_counter()
                ref_logprobs = ray.get(reference.response_logprobs.remote(samples))
                on_policy = grpo.ppo_epochs == 1 and grpo.mini_batches == 1
                # Several updates per batch need the sampling policy's log-probs kept aside.
                old_logprobs = None if on_policy else ray.get(policy.response_logprobs.remote(samples))
                times["time_reference"] = time.perf_counter() - tick
                tick = time.perf_counter()
                step_metrics = []
                for _ in range(grpo.ppo_epochs):
                    size = -(-len(samples) // grpo.mini_batches)
                    for start in range(0, len(samples), size):
                        part = slice(start, start + size)
                        old = None if old_logprobs is None else old_logprobs[part]
                        step_metrics.append(
                            ray.get(
                                policy.grpo_step.remote(
                                    samples[part], advantages[part], old, ref_logprobs[part], grpo.clip, grpo.beta
                                )
                            )
                        )
                for key in step_metrics[0]:
                    metrics[key] = statistics.fmean(m[key] for m in step_metrics)
                weights = policy.state_dict.remote()
                ray.get([w.load_weights.remote(weights) for w in rollouts])
                times["time_train"] = time.perf_counter() - tick
            elapsed = sum(times.values())
            metrics.update(times, samples_per_second=len(lengths) / elapsed, tokens_per_second=sum(lengths) / elapsed)
            log.log(step + 1, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward_total']:.2f}", kl=f"{metrics.get('kl', 0):.4f}")
            maybe_checkpoint(
                lambda path: ray.get(policy.save_checkpoint.remote(path)), out, step + 1, grpo.steps, config, "sc_grpo"
            )
        if bar is not None:
            bar.close()
        final = out / "final"
        ray.get(policy.save_model.remote(str(final)))
    finally:  # a crash (ours or an actor's) frees the actors' resources
        for actor in actors:
            ray.kill(actor)
    log.plot(GRPO_CURVES, out / "curves.png", title="SC-GRPO")
    log.close()
    window = max(1, min(10, len(log.rows) // 5))
    rewards = [r["reward_total"] for r in log.rows]
    summary = {
        "steps": grpo.steps,
        "final_model": str(final),
        "train_seconds": time.perf_counter() - started,
        "mean_reward_start": statistics.fmean(rewards[:window]) if rewards else None,
        "mean_reward_end": statistics.fmean(rewards[-window:]) if rewards else None,
        "reward_window": window,
        # The least-squares rise over every step, with its standard error: is the rise noise?
        "reward_fitted_rise": _fitted_rise(log.rows, "reward_total"),
        "normalised_reward_fitted_rise": _fitted_rise(log.rows, "reward_normalised"),
    }
    return finish(config, final, out, summary, scorer, run_eval, progress)

"""SC-GRPO's experience making, apart from the trainer loop (as OpenRLHF splits its
`experience_maker` from its trainer): a step's prompts → grouped rollouts → scores →
group-relative advantages → reference (and, for several updates, old) log-probs.

Each step's prompts are rendered and their images read once, on the driver; the rollout
workers, the reference and the policy receive them encoded.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import ray

from rewards import GroupScore, Scorer

from ..actors.rollout import Rollout
from ..data.records import Record
from ..models.encoding import EncodedPrompt, encode_prompts
from ..train.data_order import batch_at
from ..train.sequences import Sample
from .plan import GRPOPlan


@dataclass
class Group:
    """One prompt's G rollouts and their scores."""

    record: Record
    prompt: EncodedPrompt
    rollouts: list[Rollout]
    score: GroupScore


@dataclass
class Experience:
    """What one step trains on, and what it measured on the way."""

    groups: list[Group]
    samples: list[Sample]  # the groups kept (all, or those with signal)
    advantages: list[float]
    ref_logprobs: list[list[float]]
    old_logprobs: list[list[float]] | None  # None: on-policy, one update per step
    metrics: dict[str, float] = field(default_factory=dict)


class ExperienceMaker:
    """Makes a step's experience with the run's actors and scorer."""

    def __init__(self, plan: GRPOPlan, processor, scorer: Scorer, rollouts: list, reference, policy) -> None:
        self.plan, self.processor, self.scorer = plan, processor, scorer
        self.rollouts, self.reference, self.policy = rollouts, reference, policy

    def make(self, step: int) -> Experience:
        times: dict[str, float] = {}
        tick = time.perf_counter()
        records = batch_at(self.plan.records, step, self.plan.prompts_per_step, self.plan.run.seed)
        prompts = encode_prompts(self.processor, records, self.plan.model.family)  # once per step
        rollouts = self._rollout(prompts, step)
        times["time_rollout"] = time.perf_counter() - tick

        tick = time.perf_counter()
        groups = [
            Group(record, prompt, group, self.scorer.score_group([r.text for r in group], record.label))
            for record, prompt, group in zip(records, prompts, rollouts)
        ]
        kept = [g for g in groups if g.score.has_signal or not self.plan.drop_no_signal]
        samples = [Sample(g.prompt, r.token_ids) for g in kept for r in g.rollouts]
        advantages = [a for g in kept for a in g.score.advantages]
        times["time_reward"] = time.perf_counter() - tick

        tick = time.perf_counter()
        ref_logprobs = old_logprobs = None
        if samples:
            shipped = ray.put(samples)  # once into the object store, read by both actors
            temperature = self.plan.sampling.temperature
            ref = self.reference.response_logprobs.remote(shipped, temperature)
            on_policy = self.plan.ppo_epochs == 1 and self.plan.mini_batches == 1
            # Several updates per step need the sampling policy's log-probs kept aside.
            old = None if on_policy else self.policy.response_logprobs.remote(shipped, temperature)
            ref_logprobs = ray.get(ref)
            old_logprobs = None if old is None else ray.get(old)
        times["time_reference"] = time.perf_counter() - tick
        experience = Experience(groups, samples, advantages, ref_logprobs or [], old_logprobs)
        experience.metrics = {**step_metrics(groups, len(samples)), **times}
        return experience

    def _rollout(self, prompts: list[EncodedPrompt], step: int) -> list[list[Rollout]]:
        """G completions per prompt, the prompts shared out over the workers; groups come
        back in prompt order. Each worker's seed is a function of (seed, step)."""
        workers = len(self.rollouts)
        seed = self.plan.run.seed * 1_000_003 + step
        futures = [
            worker.generate.remote(prompts[i::workers], self.plan.group_size, self.plan.sampling, seed + i)
            for i, worker in enumerate(self.rollouts)
            if prompts[i::workers]
        ]
        shards = ray.get(futures)
        groups: list[list[Rollout]] = [[] for _ in prompts]
        for i, shard in enumerate(shards):
            groups[i::workers] = shard
        return groups


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


def step_metrics(groups: list[Group], trained: int) -> dict[str, float]:
    """The rewards, lengths and signal of a step's groups."""
    scores = [s for g in groups for s in g.score.scores]
    anomalous = [g.record.answer == "yes" for g in groups for _ in g.rollouts]
    lengths = [len(r.token_ids) for g in groups for r in g.rollouts]
    return {
        **reward_metrics(scores, anomalous),
        "response_length": statistics.fmean(lengths),
        "truncated": statistics.fmean(float(r.truncated) for g in groups for r in g.rollouts),
        "groups_without_signal": sum(not g.score.has_signal for g in groups),
        "samples": len(lengths),
        "samples_trained": trained,
    }

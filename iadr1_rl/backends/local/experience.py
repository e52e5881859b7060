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

from rewards import GroupScore, Scorer

from ...data.records import Record
from ...eval.metrics import score_metrics
from ...models.encoding import EncodedPrompt, encode_prompts
from ...rollout import Completion, sample_seeds
from ...train.data_order import batch_at
from ...train.sequences import Sample
from .actor_groups import GRPOActors
from .plan import GRPOPlan


@dataclass
class Group:
    """One prompt's G completions and their scores."""

    record: Record
    prompt: EncodedPrompt
    completions: list[Completion]
    score: GroupScore


@dataclass
class Experience:
    """What one step trains on, and what it measured on the way."""

    groups: list[Group]
    samples: list[Sample]  # the groups kept (all, or those with signal)
    advantages: list[float]
    ref_logprobs: list[list[float]]
    old_logprobs: list[list[float]] | None  # None: on-policy, one update per step
    sampling_logprobs: list[list[float]] | None  # the engine's, where it reports them
    metrics: dict[str, float] = field(default_factory=dict)


class ExperienceMaker:
    """Makes a step's experience with the run's actors and scorer."""

    def __init__(self, plan: GRPOPlan, processor, scorer: Scorer, actors: GRPOActors) -> None:
        self.plan, self.processor, self.scorer = plan, processor, scorer
        self.actors = actors

    def make(self, step: int) -> Experience:
        times: dict[str, float] = {}
        tick = time.perf_counter()
        records = batch_at(self.plan.records, step, self.plan.prompts_per_step, self.plan.run.seed)
        prompts = encode_prompts(self.processor, records, self.plan.model.family)  # once per step
        completions = self._rollout(prompts, step)
        times["time_rollout"] = time.perf_counter() - tick

        tick = time.perf_counter()
        groups = [
            Group(record, prompt, group, self.scorer.score_group([c.text for c in group], record.label))
            for record, prompt, group in zip(records, prompts, completions)
        ]
        kept = [g for g in groups if g.score.has_signal or not self.plan.drop_no_signal]
        samples = [Sample(g.prompt, c.token_ids) for g in kept for c in g.completions]
        advantages = [a for g in kept for a in g.score.advantages]
        completions_kept = [c for g in kept for c in g.completions]
        reported = all(c.logprobs is not None for c in completions_kept)
        sampling = [c.logprobs for c in completions_kept] if reported and completions_kept else None
        times["time_reward"] = time.perf_counter() - tick

        ref_logprobs, old_logprobs = self._logprobs(samples, times)
        experience = Experience(groups, samples, advantages, ref_logprobs, old_logprobs, sampling)
        experience.metrics = {**step_metrics(groups, len(samples), self.scorer), **times}
        return experience

    def _rollout(self, prompts: list[EncodedPrompt], step: int) -> list[list[Completion]]:
        """G completions per prompt, the prompts shared out over the workers; groups come
        back in prompt order. Each completion's seed is a function of (seed, step, the
        prompt's place, the sample's index) alone (`rollout.sample_seeds`)."""
        workers = len(self.actors.rollouts)
        seeds = sample_seeds(self.plan.run.seed, step, range(len(prompts)), self.plan.group_size)
        shards = self.actors.generate(
            [prompts[i::workers] for i in range(workers)],
            self.plan.sampling,
            [seeds[i::workers] for i in range(workers)],
        )
        groups: list[list[Completion]] = [[] for _ in prompts]
        for i, shard in enumerate(shards):
            if shard:
                groups[i::workers] = shard
        return groups

    def _logprobs(
        self, samples: list[Sample], times: dict[str, float]
    ) -> tuple[list[list[float]], list[list[float]] | None]:
        """The reference's log-probs and, when a step takes several updates, the sampling
        policy's, at the sampling temperature, each shared over its workers or ranks; both
        work at once, each timed from the start to its own result."""
        if not samples:
            times["time_reference"] = 0.0
            return [], None
        tick = time.perf_counter()
        temperature = self.plan.ppo.temperature
        ref = self.actors.reference_logprobs(samples, temperature)
        on_policy = self.plan.ppo_epochs == 1 and self.plan.mini_batches == 1
        # Several updates per step need the sampling policy's log-probs kept aside.
        old = None if on_policy else self.actors.policy.response_logprobs(samples, temperature)
        ref_logprobs = ref.result()
        times["time_reference"] = time.perf_counter() - tick
        if old is None:
            return ref_logprobs, None
        old_logprobs = old.result()
        times["time_old_logprobs"] = time.perf_counter() - tick
        return ref_logprobs, old_logprobs


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def reward_metrics(scores, labels, scorer: Scorer) -> dict[str, float]:
    """Mean and std of every reward part and the total, and the task accuracies as the
    evaluation defines them (`eval.metrics.score_metrics`: location over anomalous labels
    with cells, type over anomalous labels with a type).

    `reward_normalised` is each completion's total over the most its label allows (4 for an
    anomaly, 2 for a normal item): unlike the total, its mean does not swing with how many
    of the step's prompts happen to be anomalous."""
    metrics: dict[str, float] = {}
    for part in ("consistency", "accuracy", "location", "type", "total", "normalised"):
        mean, std = _mean_std([getattr(s, part) for s in scores])
        metrics[f"reward_{part}"], metrics[f"reward_{part}_std"] = mean, std
    metrics["answer_accuracy"] = metrics["reward_accuracy"]
    items = [score_metrics(score, scorer.parse_label(label)) for score, label in zip(scores, labels)]
    for name in ("location_accuracy", "type_score"):
        values = [item[name] for item in items if name in item]
        if values:
            metrics[name] = statistics.fmean(values)
    return metrics


def step_metrics(groups: list[Group], trained: int, scorer: Scorer) -> dict[str, float]:
    """The rewards, lengths and signal of a step's groups."""
    scores = [s for g in groups for s in g.score.scores]
    labels = [g.record.label for g in groups for _ in g.completions]
    lengths = [len(c.token_ids) for g in groups for c in g.completions]
    return {
        **reward_metrics(scores, labels, scorer),
        "response_length": statistics.fmean(lengths),
        "truncated": statistics.fmean(float(c.truncated) for g in groups for c in g.completions),
        "groups_without_signal": sum(not g.score.has_signal for g in groups),
        "samples": len(lengths),
        "samples_trained": trained,
    }

"""The local backend's actors as groups the loops drive.

- `PolicyGroup`: the policy of either stage as one or more PolicyActor ranks (DDP or
  DeepSpeed ZeRO across devices), driven as if it were one actor: each step's records or
  samples are sharded over the ranks, log-probs too, weight syncs come from rank 0 (every
  rank gathering its shards under ZeRO-3), checkpoints and the final model are written by
  all of them together.
- `GRPOActors`: SC-GRPO's policy group, its reference workers and rollout workers, started
  in the order `start_order` gives, and the versioned weight sync from the policy to the
  rollout workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from ...actors import PolicyActor, ReferenceActor, RolloutActor
from ...data.records import Record
from ...memory.estimates import GIB
from ...rollout.transport import check_seats
from ...rollout.weight_sync import DEFAULT_BUCKET_BYTES, WeightSyncError
from ...train.losses import PPOSettings
from ...train.sequences import GRPOBatch, Sample
from . import ray_env
from .plan import GRPOPlan, RanksPlan

logger = logging.getLogger(__name__)

# How long a weight sync's calls may take before the actor that did not answer is named.
DEFAULT_SYNC_TIMEOUT_S = 300.0

# Metrics of a rank's GRPO update that are its share of the whole update's token mean:
# the group's value is their sum (`PolicyActor.grpo_step`).
ADDITIVE = ("loss", "policy_loss", "kl", "clip_fraction", "ratio", "entropy_proxy", "rollout_logprob_gap")


def shard_by_tokens(lengths: Sequence[int], shards: int) -> list[list[int]]:
    """Indices of `lengths` split into `shards` groups of nearly equal token counts (longest
    first, each to the lightest group), in their original order within a group.

    >>> shard_by_tokens([5, 1, 4, 2, 3], 2)
    [[0, 1, 3], [2, 4]]
    """
    groups: list[list[int]] = [[] for _ in range(shards)]
    load = [0] * shards
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        lightest = min(range(shards), key=lambda g: (load[g], g))
        groups[lightest].append(index)
        load[lightest] += lengths[index]
    return [sorted(group) for group in groups]


def sample_tokens(sample: Sample) -> int:
    return len(sample.prompt) + len(sample.response_ids)


class PendingLogprobs:
    """Log-probs computed in shards on several actors, put back in the samples' order."""

    def __init__(self, shards: list[list[int]], refs: list, count: int) -> None:
        self.shards, self.refs, self.count = shards, refs, count

    def result(self) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in range(self.count)]
        for shard, values in zip(self.shards, ray.get(self.refs)):
            for index, row in zip(shard, values):
                out[index] = row
        return out


def sharded_logprobs(actors: list, samples: list[Sample], temperature: float, every_actor: bool) -> PendingLogprobs:
    """Each actor's `response_logprobs` on its share of `samples` (by tokens). With
    `every_actor` (policy ranks: a sharded model computes collectively) an actor given no
    samples still runs one, whose result is dropped."""
    shards = shard_by_tokens([sample_tokens(s) for s in samples], len(actors))
    kept, refs = [], []
    for actor, shard in zip(actors, shards):
        if shard:
            kept.append(shard)
            refs.append(actor.response_logprobs.remote([samples[i] for i in shard], temperature))
        elif every_actor and samples:
            kept.append([])
            refs.append(actor.response_logprobs.remote(samples[:1], temperature))
    return PendingLogprobs(kept, refs, len(samples))


class PolicyGroup:
    """`ranks.world_size` PolicyActor ranks, each with `resources` (rank names to resources),
    made by `build(rank_name)` (a Ray actor handle, not yet ready)."""

    def __init__(self, ranks: RanksPlan, handles: list, micro_batches: int = 1) -> None:
        self.plan, self.ranks, self.micro_batches = ranks, handles, micro_batches

    @classmethod
    def start(cls, ranks: RanksPlan, build: Callable[[str], Any], micro_batches: int = 1) -> PolicyGroup:
        handles = [build(name) for name in ranks.names()]
        ray.get([rank.ready.remote() for rank in handles])
        group = cls(ranks, handles, micro_batches)
        group.join()
        return group

    def join(self) -> None:
        """The ranks join one process group (all must enter the rendezvous together)."""
        if self.plan.strategy == "none":
            return
        address, port = ray.get(self.ranks[0].rendezvous.remote())
        specs = [self.plan.spec(rank, address, port) for rank in range(self.plan.world_size)]
        ray.get([actor.join_group.remote(spec) for actor, spec in zip(self.ranks, specs)])
        logger.info(
            "policy: %d rank(s), %s (ZeRO %d) at %s:%d",
            self.plan.world_size,
            self.plan.strategy,
            self.plan.zero_stage,
            address,
            port,
        )

    def _all(self, method: str, *args: Any) -> list[Any]:
        return ray.get([getattr(rank, method).remote(*args) for rank in self.ranks])

    # ------------------------------------------------------------------ steps
    def sft_step(self, records: Sequence[Record]) -> dict[str, float]:
        """One step over `records`, rank r taking records[r::world]; loss is the token
        mean over all ranks, learning rate and gradient norm rank 0's."""
        world = len(self.ranks)
        results = ray.get(
            [rank.sft_step.remote(list(records[r::world]), self.micro_batches) for r, rank in enumerate(self.ranks)]
        )
        tokens = sum(r["tokens"] for r in results)
        loss = sum(r["loss"] * r["tokens"] for r in results) / max(1, tokens)
        return {**results[0], "loss": loss, "tokens": tokens}

    def grpo_step(self, update: GRPOBatch, ppo: PPOSettings) -> dict[str, float]:
        """One update, its samples shared over the ranks by tokens, the loss the token mean
        over all of them (each rank's share divided by the whole update's tokens); a rank
        left without samples runs one with weight 0 to stay in step."""
        total = sum(len(s.response_ids) for s in update.samples)
        shards = shard_by_tokens([sample_tokens(s) for s in update.samples], len(self.ranks))
        futures = []
        for rank, shard in zip(self.ranks, shards):
            part = shard or [0]
            futures.append(rank.grpo_step.remote(shard_of(update, part, total, weight=1.0 if shard else 0.0), ppo))
        results = ray.get(futures)
        metrics = {**results[0]}
        for key in ADDITIVE:
            if key in metrics:
                metrics[key] = sum(r[key] for r in results)
        metrics["micro_batches"] = max(r["micro_batches"] for r in results)
        return metrics

    def response_logprobs(self, samples: list[Sample], temperature: float) -> PendingLogprobs:
        return sharded_logprobs(self.ranks, samples, temperature, every_actor=True)

    # ------------------------------------------------------------ weights, files
    def weight_buckets(self, bucket_bytes: int) -> int:
        return self._all("weight_buckets", bucket_bytes)[0]

    def weight_bucket(self, index: int, version: int) -> tuple[Any, list]:
        """Rank 0's bucket (an object ref) and the other ranks' calls (which gather their
        shards under ZeRO-3, and return None) to wait for."""
        refs = [rank.weight_bucket.remote(index, version) for rank in self.ranks]
        return refs[0], refs[1:]

    def weights_digests(self) -> list[str]:
        return self._all("weights_digest")

    def save_checkpoint(self, path: str) -> None:
        self._all("save_checkpoint", path)

    def save_model(self, path: str) -> None:
        self._all("save_model", path)

    def load_training_state(self, path: str) -> None:
        self._all("load_training_state", path)

    def peak_memory(self) -> list[float | None]:
        return self._all("peak_memory")

    def state_bytes(self) -> list[int]:
        """Each rank's training state (weights, gradients, master weights, optimizer), in bytes."""
        return self._all("state_bytes")

    def kill(self) -> None:
        for rank in self.ranks:
            ray.kill(rank)


def shard_of(update: GRPOBatch, part: Sequence[int], normaliser: int, weight: float) -> GRPOBatch:
    """The samples `part` of an update, normalised by the whole update's response tokens."""

    def pick(rows):
        return None if rows is None else [rows[i] for i in part]

    return replace(
        update,
        samples=pick(update.samples),
        advantages=pick(update.advantages),
        ref_logprobs=pick(update.ref_logprobs),
        old_logprobs=pick(update.old_logprobs),
        sampling_logprobs=pick(update.sampling_logprobs),
        normaliser=normaliser,
        weight=weight,
    )


def start_sft_policy(plan, path: str, placement: ray_env.Placement) -> PolicyGroup:
    """PA-SFT's policy: its ranks from `plan` (an `SFTPlan`), starting at `path`, placed as planned."""

    def build(name: str):
        return placement.remote(PolicyActor, name).remote(**plan.model.policy_kwargs(path), optimizer=plan.optimizer)

    return PolicyGroup.start(plan.ranks, build, plan.micro_batches)


@dataclass
class GRPOActors:
    """The policy group, the reference workers and the rollout workers of one SC-GRPO run."""

    policy: PolicyGroup
    references: list
    rollouts: list
    weights_version: int = 0  # syncs sent to the rollout workers
    # Each rollout worker's weight transport, in order (empty: all through the object store).
    transports: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, plan: GRPOPlan, policy_path: str, placement: ray_env.Placement) -> GRPOActors:
        """Every actor, where the memory plan placed it, in the stages `start_order` gives,
        each stage ready before the next one loads (an actor that fails to start stops the
        run, the ones started killed)."""
        model = plan.model

        def build(name: str):
            if name.startswith("policy"):
                return placement.remote(PolicyActor, name).remote(
                    **model.policy_kwargs(policy_path), optimizer=plan.optimizer
                )
            if name.startswith("reference"):
                return placement.remote(ReferenceActor, name).remote(**model.actor_kwargs(plan.init))
            # vLLM is built for its transport (its weight-transfer engine is part of the engine).
            transport = {"weight_transport": plan.transports[name]} if plan.rollout_engine == "vllm" else {}
            return placement.remote(RolloutActor, name).remote(
                **model.rollout_kwargs(policy_path),
                engine=plan.rollout_engine,
                engine_options={**plan.rollout_options, **transport},
            )

        started: dict[str, Any] = {}
        try:
            for stage in start_order(plan.resources):
                handles = {name: build(name) for name in stage}
                started.update(handles)
                ray.get([handle.ready.remote() for handle in handles.values()])
                logger.info("started %s", ", ".join(stage))
            policy = PolicyGroup(plan.ranks, [started[name] for name in plan.ranks.names()])
            policy.join()
            references = [started[name] for name in plan.resources if name.startswith("reference")]
            names = [name for name in plan.resources if name.startswith("rollout")]
            actors = cls(
                policy, references, [started[name] for name in names], transports=[plan.transports[n] for n in names]
            )
            actors.open_transports(plan, names)
        except BaseException:
            for handle in started.values():
                ray.kill(handle)
            raise
        return actors

    def open_transports(self, plan: GRPOPlan, names: list[str]) -> None:
        """The direct weight transports (ipc, nccl) the plan chose, once the devices Ray gave
        are checked to allow them; every policy rank joins each (rank 0 sends)."""
        direct = [i for i, transport in enumerate(self.transports) if transport != "object_store"]
        if not direct:
            return
        tp = plan.rollout_options.get("tensor_parallel_size", 1)
        seats = dict(
            zip([*plan.ranks.names(), *names], ray.get([a.seat.remote() for a in (*self.policy.ranks, *self.rollouts)]))
        )
        check_seats(dict(zip(names, self.transports)), seats, plan.ranks.names(), plan.rollout_engine, tp)
        for i in direct:
            address, port = ray.get(self.policy.ranks[0].rendezvous.remote())
            refs = [
                rank.open_weight_transfer.remote(
                    self.rollouts[i],
                    names[i],
                    self.transports[i],
                    plan.rollout_engine,
                    address,
                    port,
                    tp,
                    plan.sync_timeout_s,
                )
                for rank in self.policy.ranks
            ]
            answered(refs, [f"policy rank {r}" for r in range(len(refs))], 0, plan.sync_timeout_s)
            logger.info("weights to %s by %s", names[i], self.transports[i])

    def all(self) -> list:
        return [*self.policy.ranks, *self.references, *self.rollouts]

    def reference_logprobs(self, samples: list[Sample], temperature: float) -> PendingLogprobs:
        return sharded_logprobs(self.references, samples, temperature, every_actor=False)

    def sync_weights(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES, timeout_s: float = DEFAULT_SYNC_TIMEOUT_S) -> None:
        """The policy's weights to every rollout worker, bucket by bucket (each bucket once
        into the object store, read by every worker; at most two in flight). Each worker
        must confirm this sync's version after the last bucket, or the run stops here
        rather than sample from stale weights; an actor that does not answer within
        `timeout_s` (a worker, or a rank gathering its shards) stops it too, named."""
        self.weights_version += 1
        version = self.weights_version
        transports = self.transports or ["object_store"] * len(self.rollouts)
        direct = [i for i, transport in enumerate(transports) if transport != "object_store"]
        stored = [i for i in range(len(self.rollouts)) if i not in direct]
        held: dict[int, int | None] = {}
        if direct:  # the ranks send over every direct transport, then each worker says what it holds
            ranks = [f"policy rank {r}" for r in range(len(self.policy.ranks))]
            # Each call a rank makes is bounded by timeout_s and names its worker: wait longer here.
            sends = [rank.send_weights.remote(version) for rank in self.policy.ranks]
            answered(sends, ranks, version, timeout_s, wait_s=2 * timeout_s)
            versions = [self.rollouts[i].weights_version.remote() for i in direct]
            held.update(zip(direct, answered(versions, [f"rollout worker {i}" for i in direct], version, timeout_s)))
        if stored:
            held.update(zip(stored, self._sync_through_object_store(stored, version, bucket_bytes, timeout_s)))
        check_versions(version, [held[i] for i in range(len(self.rollouts))])

    def _sync_through_object_store(
        self, workers: list[int], version: int, bucket_bytes: int, timeout_s: float
    ) -> list[int | None]:
        """Sync `version` to `workers` (indices) in buckets through the object store; the
        versions they then hold."""
        count = self.policy.weight_buckets(bucket_bytes)
        # Waited for together: rank 0 making the bucket, the workers taking it, the other ranks gathering.
        names = ["policy rank 0", *(f"rollout worker {i}" for i in workers)]
        names += [f"policy rank {r}" for r in range(1, len(self.policy.ranks))]
        in_flight: list[list] = []
        for index in range(count):
            bucket, gathering = self.policy.weight_bucket(index, version)
            taking = [self.rollouts[i].load_weights.remote(bucket) for i in workers]
            in_flight.append([bucket, *taking, *gathering])
            if len(in_flight) > 1:  # bounded memory: bucket i + 1 is made while workers take i
                answered(in_flight.pop(0), names, version, timeout_s)
        return answered(in_flight[-1], names, version, timeout_s)[1 : 1 + len(workers)]

    def peak_memory(self) -> dict[str, float]:
        """Each kind of actor's largest peak memory since the last call, in GiB."""
        policy = self.policy.peak_memory()
        others = ray.get([actor.peak_memory.remote() for actor in (*self.references, *self.rollouts)])
        references, rollouts = others[: len(self.references)], others[len(self.references) :]
        state = max(self.policy.state_bytes()) / GIB  # the largest rank's (ZeRO shards it)
        return {
            **peak_metrics({"policy": policy, "reference": references, "rollout": rollouts}),
            "state_policy_gib": state,
        }

    def kill(self) -> None:
        for actor in self.all():
            ray.kill(actor)


def start_order(resources: dict[str, dict[str, float]]) -> list[list[str]]:
    """The actors (by their names in `resources`) in the stages they start in.

    Rollout workers on a GPU start first, alone, and are ready (asleep with `rollout.sleep`)
    before the policy and the reference load: vLLM sizes itself from the device's free
    memory at start, so weights loading beside it are charged to it or fail its profiling
    check, and it refuses to start when what they hold leaves less than its share free. On
    the CPU nothing is sized from free memory, and all start at once.

    >>> start_order({"policy": {"num_gpus": 0.4}, "reference": {"num_gpus": 0.3}, "rollout": {"num_gpus": 0.3}})
    [['rollout'], ['policy', 'reference']]
    >>> start_order({"policy": {"num_gpus": 0}, "reference": {"num_gpus": 0}, "rollout": {"num_gpus": 0}})
    [['rollout', 'policy', 'reference']]
    """
    rollouts = [name for name in resources if name.startswith("rollout")]
    others = [name for name in resources if name not in rollouts]
    if any(resources[name].get("num_gpus", 0.0) > 0 for name in rollouts):
        return [rollouts, others]
    return [rollouts + others]


def answered(refs: list, names: list[str], version: int, timeout_s: float, wait_s: float | None = None) -> list:
    """The results of a sync's calls, or a WeightSyncError naming the actors that did not
    answer within `timeout_s` (a hung engine or rank ends the run instead of hanging it);
    `wait_s` waits longer for calls made of several bounded ones."""
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=wait_s or timeout_s)
    if pending:
        late = [name for ref, name in zip(refs, names) if ref in pending]
        raise WeightSyncError(
            f"weight sync {version}: {', '.join(late)} did not answer within rollout.sync_timeout_s={timeout_s:g} s; "
            "stopping (the last checkpoint is kept; --resume continues from it)"
        )
    return ray.get(refs)


def check_versions(sent: int, held: Sequence[int | None]) -> None:
    """Every worker holds the version just sent, or the run stops naming the stale ones."""
    stale = [i for i, version in enumerate(held) if version != sent]
    if stale:
        raise WeightSyncError(
            f"weight sync {sent} did not reach rollout worker(s) {stale} (they hold "
            f"{[held[i] for i in stale]}): stopping rather than training on samples from stale weights"
        )


def peak_metrics(peaks: dict[str, list[float | None]]) -> dict[str, float]:
    """`memory_<actor>_gib` for each actor whose peak could be measured."""
    return {
        f"memory_{name}_gib": max(values) / GIB
        for name, values in peaks.items()
        if values and all(v is not None for v in values)
    }

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
from .resilience import ActorLost, ActorRef, wait_for

logger = logging.getLogger(__name__)

# How long a weight sync's calls may take before the actor that did not answer is named.
DEFAULT_SYNC_TIMEOUT_S = 300.0
# How long any other call a step waits on may take (resilience.call_timeout_s).
DEFAULT_CALL_TIMEOUT_S = 1800.0

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

    def __init__(
        self, shards: list[list[int]], refs: list, count: int, actors: list[ActorRef], timeout_s: float
    ) -> None:
        self.shards, self.refs, self.count, self.actors, self.timeout_s = shards, refs, count, actors, timeout_s

    def result(self) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in range(self.count)]
        for shard, values in zip(self.shards, wait_for(self.refs, self.actors, self.timeout_s)):
            for index, row in zip(shard, values):
                out[index] = row
        return out


def sharded_logprobs(
    actors: list, kind: str, samples: list[Sample], temperature: float, every_actor: bool, timeout_s: float
) -> PendingLogprobs:
    """Each actor's (of `kind`) `response_logprobs` on its share of `samples` (by tokens).
    With `every_actor` (policy ranks: a sharded model computes collectively) an actor given
    no samples still runs one, whose result is dropped."""
    shards = shard_by_tokens([sample_tokens(s) for s in samples], len(actors))
    kept, refs, asked = [], [], []
    for index, (actor, shard) in enumerate(zip(actors, shards)):
        if shard:
            kept.append(shard)
            refs.append(actor.response_logprobs.remote([samples[i] for i in shard], temperature))
        elif every_actor and samples:
            kept.append([])
            refs.append(actor.response_logprobs.remote(samples[:1], temperature))
        else:
            continue
        asked.append(ActorRef(kind, index))
    return PendingLogprobs(kept, refs, len(samples), asked, timeout_s)


class PolicyGroup:
    """`ranks.world_size` PolicyActor ranks, each with `resources` (rank names to resources),
    made by `build(rank_name)` (a Ray actor handle, not yet ready)."""

    def __init__(
        self, ranks: RanksPlan, handles: list, micro_batches: int = 1, timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    ) -> None:
        self.plan, self.ranks, self.micro_batches, self.timeout_s = ranks, handles, micro_batches, timeout_s

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
        address, port = self._wait([self.ranks[0].rendezvous.remote()])[0]
        specs = [self.plan.spec(rank, address, port) for rank in range(self.plan.world_size)]
        self._wait([actor.join_group.remote(spec) for actor, spec in zip(self.ranks, specs)])
        logger.info(
            "policy: %d rank(s), %s (ZeRO %d) at %s:%d",
            self.plan.world_size,
            self.plan.strategy,
            self.plan.zero_stage,
            address,
            port,
        )

    def _wait(self, refs: list) -> list[Any]:
        """The ranks' answers (one per rank, in order; fewer: the first ranks'), bounded."""
        return wait_for(refs, [ActorRef("policy", r) for r in range(len(refs))], self.timeout_s)

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._wait([getattr(rank, method).remote(*args) for rank in self.ranks])

    # ------------------------------------------------------------------ steps
    def sft_step(self, records: Sequence[Record]) -> dict[str, float]:
        """One step over `records`, rank r taking records[r::world]; loss is the token
        mean over all ranks, learning rate and gradient norm rank 0's."""
        world = len(self.ranks)
        results = self._wait(
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
        results = self._wait(futures)
        metrics = {**results[0]}
        for key in ADDITIVE:
            if key in metrics:
                metrics[key] = sum(r[key] for r in results)
        metrics["micro_batches"] = max(r["micro_batches"] for r in results)
        return metrics

    def response_logprobs(self, samples: list[Sample], temperature: float) -> PendingLogprobs:
        return sharded_logprobs(self.ranks, "policy", samples, temperature, True, self.timeout_s)

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
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S  # resilience.call_timeout_s
    plan: GRPOPlan | None = None  # what `replace` and the direct transports start from
    build: Callable[[str], Any] | None = None  # a new actor by its name in the plan
    placement: ray_env.Placement | None = None  # where `build` places them
    weight_bytes: int | None = None  # one whole copy of the weights
    sync_bytes: int = 0  # sent to the workers since the run (or its restart) began

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
                wait_ready(handles, plan.call_timeout_s)
                logger.info("started %s", ", ".join(stage))
            ranks = [started[name] for name in plan.ranks.names()]
            policy = PolicyGroup(plan.ranks, ranks, timeout_s=plan.call_timeout_s)
            policy.join()
            actors = cls(
                policy,
                [started[name] for name in actor_names(plan, "reference")],
                [started[name] for name in actor_names(plan, "rollout")],
                transports=[plan.transports[name] for name in actor_names(plan, "rollout")],
                timeout_s=plan.call_timeout_s,
                plan=plan,
                build=build,
                placement=placement,
            )
            actors.open_transports()
        except BaseException:
            for handle in started.values():
                ray.kill(handle)
            raise
        return actors

    def open_transports(self) -> None:
        """The direct weight transports (ipc, nccl) the plan chose, once the devices Ray gave
        are checked to allow them."""
        direct = [i for i, transport in enumerate(self.transports) if transport != "object_store"]
        if not direct:
            return
        plan = self.plan
        names = actor_names(plan, "rollout")
        seats = self.policy._all("seat")
        seats += wait_for([w.seat.remote() for w in self.rollouts], self._refs("rollout"), self.timeout_s)
        placed = dict(zip([*plan.ranks.names(), *names], seats))
        tp = plan.rollout_options.get("tensor_parallel_size", 1)
        check_seats(dict(zip(names, self.transports)), placed, plan.ranks.names(), plan.rollout_engine, tp)
        for index in direct:
            self.open_transport(index)

    def open_transport(self, index: int) -> None:
        """Rollout worker `index`'s direct transport: every policy rank joins it (rank 0 sends)."""
        plan = self.plan
        address, port = self.policy._wait([self.policy.ranks[0].rendezvous.remote()])[0]
        tp = plan.rollout_options.get("tensor_parallel_size", 1)
        worker, transport = self.rollouts[index], self.transports[index]
        refs = [
            rank.open_weight_transfer.remote(
                worker,
                str(ActorRef("rollout", index)),
                transport,
                plan.rollout_engine,
                address,
                port,
                tp,
                plan.sync_timeout_s,
                slot=index,
            )
            for rank in self.policy.ranks
        ]
        answered(refs, self._refs("policy", len(refs)), 0, plan.sync_timeout_s)
        logger.info("weights to rollout worker %d by %s", index, transport)

    def all(self) -> list:
        return [*self.policy.ranks, *self.references, *self.rollouts]

    def _refs(self, kind: str, count: int | None = None) -> list[ActorRef]:
        if count is None:
            count = len(self.rollouts if kind == "rollout" else self.references)
        return [ActorRef(kind, i) for i in range(count)]

    def generate(self, prompt_shards: list, sampling, seed_shards: list) -> list:
        """Each rollout worker's completions of its shard (an empty shard: no call), bounded."""
        asked = [i for i, shard in enumerate(prompt_shards) if shard]
        refs = [self.rollouts[i].generate.remote(prompt_shards[i], sampling, seed_shards[i]) for i in asked]
        answers = dict(zip(asked, wait_for(refs, [ActorRef("rollout", i) for i in asked], self.timeout_s)))
        return [answers.get(i, []) for i in range(len(prompt_shards))]

    def reference_logprobs(self, samples: list[Sample], temperature: float) -> PendingLogprobs:
        return sharded_logprobs(self.references, "reference", samples, temperature, False, self.timeout_s)

    def replace(self, lost: ActorRef) -> None:
        """A new rollout or reference worker where `lost` was (the old one killed, if it
        still runs: a hung one too); a new rollout worker joins its transport and takes the
        policy's current weights (a full sync to every worker, a new version) before it
        samples."""
        if self.build is None or self.plan is None:
            raise RuntimeError(f"{lost} cannot be started again: these actors were not started from a plan")
        handles = self.rollouts if lost.kind == "rollout" else self.references
        ray.kill(handles[lost.index], no_restart=True)
        if self.placement is not None:  # its bundle may have been on a node that is gone
            self.placement.wait_placed()
        handles[lost.index] = self.build(actor_names(self.plan, lost.kind)[lost.index])
        wait_for([handles[lost.index].ready.remote()], [lost], self.timeout_s)
        if lost.kind != "rollout":
            return
        if self.transports and self.transports[lost.index] != "object_store":
            self.open_transport(lost.index)
        if self.weights_version:  # it loaded the run's starting weights; the policy has moved since
            self.sync_weights(timeout_s=self.plan.sync_timeout_s)

    def sync_weights(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES, timeout_s: float = DEFAULT_SYNC_TIMEOUT_S) -> None:
        """The policy's weights to every rollout worker: over its direct transport, or bucket
        by bucket through the object store (each bucket once, read by every worker; at most
        two in flight). Each worker must confirm this sync's version after the last bucket,
        or the run stops here rather than sample from stale weights; an actor that does not
        answer within `timeout_s` (a worker, or a rank gathering its shards) stops it too,
        named."""
        self.weights_version += 1
        version = self.weights_version
        transports = self.transports or ["object_store"] * len(self.rollouts)
        direct = [i for i, transport in enumerate(transports) if transport != "object_store"]
        stored = [i for i in range(len(self.rollouts)) if i not in direct]
        held: dict[int, int | None] = {}
        if direct:  # the ranks send over every direct transport, then each worker says what it holds
            # Each call a rank makes is bounded by timeout_s and names its worker: wait longer here.
            sends = [rank.send_weights.remote(version) for rank in self.policy.ranks]
            answered(sends, self._refs("policy", len(sends)), version, timeout_s, wait_s=2 * timeout_s)
            versions = [self.rollouts[i].weights_version.remote() for i in direct]
            asked = [ActorRef("rollout", i) for i in direct]
            held.update(zip(direct, answered(versions, asked, version, timeout_s)))
        if stored:
            held.update(zip(stored, self._sync_through_object_store(stored, version, bucket_bytes, timeout_s)))
        check_versions(version, [held[i] for i in range(len(self.rollouts))])
        if self.weight_bytes is None:  # the same every sync: asked once
            self.weight_bytes = self.policy._wait([self.policy.ranks[0].weight_bytes.remote()])[0]
        self.sync_bytes += self.weight_bytes * len(self.rollouts)

    def _sync_through_object_store(
        self, workers: list[int], version: int, bucket_bytes: int, timeout_s: float
    ) -> list[int | None]:
        """Sync `version` to `workers` (indices) in buckets through the object store; the
        versions they then hold."""
        count = self.policy.weight_buckets(bucket_bytes)
        # Waited for together: rank 0 making the bucket, the workers taking it, the other ranks gathering.
        ranks = len(self.policy.ranks)
        asked = [ActorRef("policy", 0), *(ActorRef("rollout", i) for i in workers)]
        asked += [ActorRef("policy", r) for r in range(1, ranks)]
        in_flight: list[list] = []
        for index in range(count):
            bucket, gathering = self.policy.weight_bucket(index, version)
            taking = [self.rollouts[i].load_weights.remote(bucket) for i in workers]
            in_flight.append([bucket, *taking, *gathering])
            if len(in_flight) > 1:  # bounded memory: bucket i + 1 is made while workers take i
                answered(in_flight.pop(0), asked, version, timeout_s)
        return answered(in_flight[-1], asked, version, timeout_s)[1 : 1 + len(workers)]

    def peak_memory(self) -> dict[str, float]:
        """Each kind of actor's largest peak memory since the last call, in GiB."""
        policy = self.policy.peak_memory()
        asked = [*self._refs("reference"), *self._refs("rollout")]
        others = wait_for(
            [actor.peak_memory.remote() for actor in (*self.references, *self.rollouts)], asked, self.timeout_s
        )
        references, rollouts = others[: len(self.references)], others[len(self.references) :]
        state = max(self.policy.state_bytes()) / GIB  # the largest rank's (ZeRO shards it)
        return {
            **peak_metrics({"policy": policy, "reference": references, "rollout": rollouts}),
            "state_policy_gib": state,
        }

    def kill(self) -> None:
        for actor in self.all():
            ray.kill(actor)


def wait_ready(handles: dict[str, Any], timeout_s: float) -> None:
    """Until the actors (by their names in the plan) have loaded, each within `timeout_s`
    (resilience.call_timeout_s): one that hangs starting (a rollout engine stuck in its
    start-up) or dies is `ActorLost`, named, as in a step; one whose constructor raised, its
    own error."""
    wait_for([handle.ready.remote() for handle in handles.values()], [ActorRef.named(n) for n in handles], timeout_s)


def actor_names(plan: GRPOPlan, kind: str) -> list[str]:
    """The plan's names of the actors of `kind`, in order."""
    return [name for name in plan.resources if name.startswith(kind)]


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


class SyncLost(ActorLost, WeightSyncError):
    """An actor lost during a weight sync (dead, or late past rollout.sync_timeout_s)."""


def answered(refs: list, actors: list[ActorRef], version: int, timeout_s: float, wait_s: float | None = None) -> list:
    """The results of a sync's calls to `actors`, or `SyncLost` naming the first that died or
    did not answer within `timeout_s` (a hung engine or rank ends the wait instead of hanging
    the run); `wait_s` waits longer for calls made of several bounded ones."""
    try:
        return wait_for(refs, actors, wait_s or timeout_s, bound=f"rollout.sync_timeout_s={timeout_s:g} s")
    except ActorLost as lost:
        raise SyncLost(lost.actor, f"{lost.reason} (weight sync {version})") from lost


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

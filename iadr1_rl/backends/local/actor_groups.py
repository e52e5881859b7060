"""The local backend's actors as groups the loops drive.

- `PolicyGroup`: the PA-SFT policy as one or more PolicyActor ranks (DDP or DeepSpeed ZeRO
  across devices), driven as if it were one actor: each step's records are sharded over
  the ranks, checkpoints and the final model are written by all of them together.
- `GRPOActors`: SC-GRPO's policy, frozen reference and rollout workers, and the weight
  sync from the policy to the workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from ...actors import PolicyActor, ReferenceActor, RolloutActor
from ...data.records import Record
from ...memory.estimates import GIB
from ...rollout.weight_sync import DEFAULT_BUCKET_BYTES, WeightSyncError
from ...train.distributed import DistributedSpec
from . import ray_env
from .plan import GRPOPlan, SFTPlan

logger = logging.getLogger(__name__)


class PolicyGroup:
    """`plan.world_size` PolicyActor ranks, each with `resources.policy`, starting at `path`."""

    def __init__(self, plan: SFTPlan, path: str) -> None:
        self.micro_batches = plan.micro_batches
        cls = ray_env.remote(PolicyActor, plan.resources["policy rank 0"])
        self.ranks = [
            cls.remote(**plan.model.policy_kwargs(path), optimizer=plan.optimizer) for _ in range(plan.world_size)
        ]
        ray.get([rank.ready.remote() for rank in self.ranks])
        if plan.strategy != "none":
            address, port = ray.get(self.ranks[0].rendezvous.remote())
            specs = [
                DistributedSpec(
                    plan.strategy, rank, plan.world_size, address, port, plan.zero_stage, plan.offload_optimizer
                )
                for rank in range(plan.world_size)
            ]
            # All ranks must enter the rendezvous together.
            ray.get([actor.join_group.remote(spec, self.micro_batches) for actor, spec in zip(self.ranks, specs)])
            logger.info(
                "PA-SFT policy: %d rank(s), %s (ZeRO %d) at %s:%d",
                plan.world_size,
                plan.strategy,
                plan.zero_stage,
                address,
                port,
            )

    def _all(self, method: str, *args: Any) -> list[Any]:
        return ray.get([getattr(rank, method).remote(*args) for rank in self.ranks])

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

    def save_checkpoint(self, path: str) -> None:
        self._all("save_checkpoint", path)

    def save_model(self, path: str) -> None:
        self._all("save_model", path)

    def load_training_state(self, path: str) -> None:
        self._all("load_training_state", path)

    def peak_memory(self) -> dict[str, float]:
        """The largest rank's peak memory since the last call, in GiB (where measurable)."""
        return peak_metrics({"policy": ray.get([rank.peak_memory.remote() for rank in self.ranks])})

    def kill(self) -> None:
        for rank in self.ranks:
            ray.kill(rank)


@dataclass
class GRPOActors:
    """The policy, the frozen reference and the rollout workers of one SC-GRPO run."""

    policy: Any
    reference: Any
    rollouts: list
    weights_version: int = 0  # syncs sent to the rollout workers

    @classmethod
    def start(cls, plan: GRPOPlan, policy_path: str) -> GRPOActors:
        """Every actor, in the stages `start_order` gives, each stage ready before the next
        one loads (an actor that fails to start stops the run, the ones started killed)."""
        model = plan.model
        builders = {
            "policy": lambda: ray_env.remote(PolicyActor, plan.resources["policy"]).remote(
                **model.policy_kwargs(policy_path), optimizer=plan.optimizer
            ),
            "reference": lambda: ray_env.remote(ReferenceActor, plan.resources["reference"]).remote(
                **model.actor_kwargs(plan.init)
            ),
        }
        for name in plan.resources:
            if name.startswith("rollout"):
                builders[name] = lambda name=name: ray_env.remote(RolloutActor, plan.resources[name]).remote(
                    **model.rollout_kwargs(policy_path), engine=plan.rollout_engine, engine_options=plan.rollout_options
                )
        started: dict[str, Any] = {}
        try:
            for stage in start_order(plan.resources):
                handles = {name: builders[name]() for name in stage}
                started.update(handles)
                ray.get([handle.ready.remote() for handle in handles.values()])
                logger.info("started %s", ", ".join(stage))
        except BaseException:
            for handle in started.values():
                ray.kill(handle)
            raise
        rollouts = [started[name] for name in plan.resources if name.startswith("rollout")]
        return cls(started["policy"], started["reference"], rollouts)

    def all(self) -> list:
        return [self.policy, self.reference, *self.rollouts]

    def sync_weights(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        """The policy's weights to every rollout worker, bucket by bucket (each bucket once
        into the object store, read by every worker; at most two in flight). Each worker
        must confirm this sync's version after the last bucket, or the run stops here
        rather than sample from stale weights."""
        self.weights_version += 1
        version = self.weights_version
        count = ray.get(self.policy.weight_buckets.remote(bucket_bytes))
        in_flight: list[list] = []
        for index in range(count):
            bucket = self.policy.weight_bucket.remote(index, version)
            in_flight.append([worker.load_weights.remote(bucket) for worker in self.rollouts])
            if len(in_flight) > 1:  # bounded memory: bucket i + 1 is made while workers take i
                ray.get(in_flight.pop(0))
        held = ray.get(in_flight[-1])
        check_versions(version, held)

    def peak_memory(self) -> dict[str, float]:
        """Each actor's peak memory since the last call (the largest rollout worker's), in GiB."""
        policy, reference, *rollouts = ray.get([actor.peak_memory.remote() for actor in self.all()])
        return peak_metrics({"policy": [policy], "reference": [reference], "rollout": rollouts})

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

    >>> start_order({"policy": {"num_gpus": 0.4}, "reference": {"num_gpus": 0.3}, "rollout0": {"num_gpus": 0.3}})
    [['rollout0'], ['policy', 'reference']]
    >>> start_order({"policy": {"num_gpus": 0}, "reference": {"num_gpus": 0}, "rollout0": {"num_gpus": 0}})
    [['rollout0', 'policy', 'reference']]
    """
    rollouts = [name for name in resources if name.startswith("rollout")]
    others = [name for name in resources if name not in rollouts]
    if any(resources[name].get("num_gpus", 0.0) > 0 for name in rollouts):
        return [rollouts, others]
    return [rollouts + others]


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

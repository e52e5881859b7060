"""The PA-SFT policy as one or more PolicyActor ranks (DDP or DeepSpeed ZeRO across
devices), driven as if it were one actor: each step's records are sharded over the
ranks, checkpoints and the final model are written by all of them together."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..actors import PolicyActor
from ..data.records import Record
from ..train.distributed import DistributedSpec
from . import ray_env
from .plan import SFTPlan

logger = logging.getLogger(__name__)


class PolicyGroup:
    """`plan.world_size` PolicyActor ranks, each with `resources.policy`, starting at `path`."""

    def __init__(self, plan: SFTPlan, path: str) -> None:
        import ray

        self.micro_batches = plan.micro_batches
        cls = ray_env.remote(PolicyActor, plan.resources["policy rank 0"])
        optimizer = {
            "lr": plan.optimizer.lr,
            "weight_decay": plan.optimizer.weight_decay,
            "total_steps": plan.optimizer.total_steps,
            "warmup_steps": plan.optimizer.warmup_steps,
            "grad_clip": plan.optimizer.grad_clip,
            "gradient_checkpointing": plan.model.gradient_checkpointing,
        }
        self.ranks = [cls.remote(**plan.model.actor_kwargs(path), **optimizer) for _ in range(plan.world_size)]
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
        import ray

        return ray.get([getattr(rank, method).remote(*args) for rank in self.ranks])

    def sft_step(self, records: Sequence[Record]) -> dict[str, float]:
        """One step over `records`, rank r taking records[r::world]; loss is the token
        mean over all ranks, learning rate and gradient norm rank 0's."""
        import ray

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

    def kill(self) -> None:
        import ray

        for rank in self.ranks:
            ray.kill(rank)

"""The PA-SFT policy as one or more PolicyActor ranks (DDP or DeepSpeed ZeRO across
devices), driven as if it were one actor: each step's records are sharded over the
ranks, checkpoints and the final model are written by all of them together."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..actors import PolicyActor
from ..data.records import Record
from ..train.config import RecipeConfig
from ..train.distributed import DistributedSpec
from . import ray_env
from .local import resources

logger = logging.getLogger(__name__)


def check_sharding(config: RecipeConfig) -> None:
    """Every rank needs at least one record per micro-batch of every step."""
    sft = config.sft
    DistributedSpec(sft.strategy, 0, sft.world_size, zero_stage=sft.zero_stage)  # validates the names
    needed = sft.world_size * max(1, sft.gradient_accumulation)
    if sft.batch_size < needed:
        raise ValueError(
            f"sft.batch_size {sft.batch_size} cannot feed {sft.world_size} rank(s) × "
            f"{sft.gradient_accumulation} micro-batch(es); use at least {needed}"
        )


class PolicyGroup:
    """`sft.world_size` PolicyActor ranks, each with `resources.policy`."""

    def __init__(self, config: RecipeConfig, actor_kwargs: dict[str, Any], **optimizer: Any) -> None:
        import ray

        sft = config.sft
        self.micro_batches = max(1, sft.gradient_accumulation)
        cls = ray_env.remote(PolicyActor, resources(config.resources.policy))
        self.ranks = [cls.remote(**actor_kwargs, **optimizer) for _ in range(sft.world_size)]
        ray.get([rank.ready.remote() for rank in self.ranks])
        if sft.strategy != "none":
            address, port = ray.get(self.ranks[0].rendezvous.remote())
            specs = [
                DistributedSpec(
                    sft.strategy, rank, sft.world_size, address, port, sft.zero_stage, sft.offload_optimizer
                )
                for rank in range(sft.world_size)
            ]
            # All ranks must enter the rendezvous together.
            ray.get([actor.join_group.remote(spec, self.micro_batches) for actor, spec in zip(self.ranks, specs)])
            logger.info(
                "PA-SFT policy: %d rank(s), %s (ZeRO %d) at %s:%d",
                sft.world_size,
                sft.strategy,
                sft.zero_stage,
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

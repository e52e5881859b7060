"""The policy's side of a direct weight transport (`ipc`, `nccl`): vLLM's own
weight-transfer engines for a vLLM worker, `torch_transfer`'s for the HF engine, driven the
same way.

- `CheckpointSource`: the policy's parameters under their checkpoint names, as vLLM's
  trainer engines take a `WeightSource` (`metadata()` without moving anything, then one
  pass of tensors). Under ZeRO-3 a pass gathers one bucket at a time on every rank.
- `ActorClient`: the rollout actor's four transfer calls over Ray, each bounded by
  `rollout.sync_timeout_s` (a worker that does not answer is named, never waited for),
  the last one carrying the sync's version, which the worker then reports as held.
- `open_trainer`: the trainer half for one worker's transport and engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from .weight_sync import WeightSyncError, bucket_layout, whole_bytes


@dataclass(frozen=True)
class ParamMeta:
    """Name, dtype and whole shape of one parameter (vLLM's `ParamMeta` by its fields)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]


class CheckpointSource:
    """`named` parameters (checkpoint names) sent whole: `gather(parameters)` makes a
    bucket's ZeRO-3 shards whole on every rank while it is read (a no-op otherwise)."""

    def __init__(
        self,
        named: Sequence[tuple[str, torch.nn.Parameter]],
        gather: Callable[[list], AbstractContextManager],
        bucket_bytes: int,
    ) -> None:
        self.named = list(named)
        self.gather = gather
        sizes = [whole_bytes(p) for _, p in self.named]
        self.layout = bucket_layout(sizes, bucket_bytes)

    def metadata(self) -> list[ParamMeta]:
        return [ParamMeta(name, p.dtype, _shape(p)) for name, p in self.named]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for indices in self.layout:
            bucket = [self.named[i] for i in indices]
            with self.gather([p for _, p in bucket]), torch.no_grad():
                for name, parameter in bucket:
                    yield name, parameter.detach()


def _shape(parameter: torch.nn.Parameter) -> tuple[int, ...]:
    return tuple(getattr(parameter, "ds_shape", parameter.shape))


class ActorClient:
    """A rollout actor's transfer calls, as vLLM's `VLLMWeightSyncClient` protocol names them."""

    def __init__(self, actor: Any, name: str, timeout_s: float) -> None:
        self.actor, self.name, self.timeout_s = actor, name, timeout_s
        self.version = 0  # the sync under way: `finish_weight_update` tells the worker

    def _call(self, method: str, *args: Any) -> Any:
        import ray
        from ray.exceptions import GetTimeoutError

        try:
            return ray.get(getattr(self.actor, method).remote(*args), timeout=self.timeout_s)
        except GetTimeoutError:
            raise WeightSyncError(
                f"weight sync {self.version}: {self.name} did not answer {method} within "
                f"rollout.sync_timeout_s={self.timeout_s:g} s; stopping (the last checkpoint is kept)"
            ) from None

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self._call("init_weight_transfer_engine", init_info)

    def start_weight_update(self) -> None:
        self._call("start_weight_update")

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self._call("update_weights", update_info)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._call("finish_weight_update", self.version)


def open_trainer(
    transport: str,
    engine: str,
    rank: int,
    client: ActorClient,
    source: CheckpointSource,
    address: str,
    port: int,
    tensor_parallel: int = 1,
):
    """The trainer half of `transport` to one worker running `engine`, on policy rank `rank`
    (rank 0 sends; every rank calls this, and `send_weights`, together). `gloo` is the HF
    engine's broadcast on the CPU (tests only: `rollout.weight_transport` offers nccl)."""
    if engine == "vllm":
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        if transport == "ipc":
            from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

            info = IPCTrainerInitInfo(rank=rank)
        elif transport == "nccl":
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

            info = NCCLTrainerInitInfo(address, port, 1 + tensor_parallel, rank=rank)
        else:
            raise ValueError(f"vLLM's weight-transfer engines are ipc and nccl, not {transport!r}")
        return WeightTransferTrainerFactory.trainer_init(info, client=client, source=source)
    from .torch_transfer import TRAINERS

    if transport not in TRAINERS:
        raise ValueError(f"the HF engine's transports are {', '.join(TRAINERS)}, not {transport!r}")
    info = {"rank": rank, "backend": transport, "master_address": address, "master_port": port}
    return TRAINERS[transport].trainer_init(info, client=client, source=source)

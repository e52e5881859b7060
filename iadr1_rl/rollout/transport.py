"""Which way the policy's weights travel to each rollout worker (`rollout.weight_transport`).

- `object_store`: buckets of bytes through Ray's object store (`weight_sync.py`): works
  everywhere, the only way on the CPU, and through host memory on GPUs.
- `ipc`: CUDA IPC handles of the policy's own GPU tensors: the engine reads them in place,
  so it must share a GPU with a policy rank that holds them (one of the policy's GPUs for
  vLLM, whose IPC engine takes a handle from every rank; policy rank 0's for the HF engine).
- `nccl`: a broadcast from policy rank 0 into the engine's GPUs: NCCL puts one rank of a
  group on a GPU, so none of the engine's GPUs may be rank 0's.
- `auto`: `ipc` where it can, else `nccl`, else `object_store`.

Every decision is a plain function of where the actors sit (`Seat`), so that the plan
decides from the memory plan's devices before anything starts, and the run checks the
devices Ray actually gave against that decision (never a transport that silently cannot
work: a wrong guess would hang in a collective or read another GPU's memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TRANSPORTS = ("auto", "object_store", "ipc", "nccl")


class TransportError(ValueError):
    """A transport that cannot work between these actors."""


@dataclass(frozen=True)
class Seat:
    """Where an actor computes: its node and its GPUs (none: the CPU)."""

    node: str
    gpus: tuple[str, ...] = ()

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpus)

    def shares_gpu(self, other: Seat) -> bool:
        return self.node == other.node and bool(set(self.gpus) & set(other.gpus))


def choose_transport(
    requested: str, worker: Seat, policy: Sequence[Seat], engine: str, tensor_parallel: int = 1
) -> str:
    """The transport from the policy ranks at `policy` (rank 0 first) to a rollout worker at
    `worker` running `engine`; `requested` is `rollout.weight_transport`.

    >>> gpu0, gpu1 = Seat("n", ("0",)), Seat("n", ("1",))
    >>> choose_transport("auto", gpu0, [gpu0], "vllm"), choose_transport("auto", gpu1, [gpu0], "vllm")
    ('ipc', 'nccl')
    >>> choose_transport("auto", Seat("n"), [gpu0], "hf")
    'object_store'
    """
    if requested not in TRANSPORTS:
        raise TransportError(f"rollout.weight_transport={requested!r}: choose from {', '.join(TRANSPORTS)}")
    if not policy:
        raise TransportError("no policy rank to send weights from")
    rank0 = policy[0]
    sharing = [seat for seat in (policy if engine == "vllm" else policy[:1]) if seat.on_gpu]
    ipc_possible = worker.on_gpu and all(
        any(Seat(worker.node, (g,)).shares_gpu(s) for s in sharing) for g in worker.gpus
    )
    nccl_possible = worker.on_gpu and rank0.on_gpu and not worker.shares_gpu(rank0)
    asked = requested
    if requested == "auto":
        if ipc_possible:
            return "ipc"
        if nccl_possible:
            return "nccl"
        requested = "object_store"
    if requested == "object_store":
        if tensor_parallel > 1:
            raise TransportError(
                f"rollout.weight_transport={asked} (object_store here) with rollout.tensor_parallel_size="
                f"{tensor_parallel}: a tensor-parallel engine's workers are processes of their own; its weights "
                "go by ipc or nccl"
            )
        return requested
    where = f"the rollout worker on {_describe(worker)}, policy rank 0 on {_describe(rank0)}"
    if requested == "ipc" and not ipc_possible:
        holder = "a policy rank" if engine == "vllm" else "policy rank 0"
        raise TransportError(
            f"rollout.weight_transport=ipc needs every GPU of the engine to be one {holder} computes on ({where}): "
            "place them together (fractional resources.*.num_gpus) or choose nccl"
        )
    if requested == "nccl" and not nccl_possible:
        why = "GPUs" if not (worker.on_gpu and rank0.on_gpu) else "GPUs other than policy rank 0's"
        raise TransportError(
            f"rollout.weight_transport=nccl needs the engine on {why} ({where}; NCCL puts one rank of a group on "
            "a GPU): choose ipc for an engine beside rank 0, object_store on the CPU"
        )
    return requested


def _describe(seat: Seat) -> str:
    return f"{seat.node} GPU {','.join(seat.gpus)}" if seat.on_gpu else "the CPU"


def planned_seats(devices: Sequence) -> dict[str, Seat]:
    """Each actor's seat as the memory plan placed it (`memory.estimates.DeviceCheck`s, whose
    GPUs are numbered in order; host memory: the CPU). One planned node: what the plan
    checks, and what its placement group asks Ray for.

    >>> from iadr1_rl.memory.estimates import ActorEstimate, DeviceCheck
    >>> gpu = DeviceCheck("GPU 0", 80.0, [ActorEstimate("policy")])
    >>> pair = DeviceCheck("GPUs 1-2", 80.0, [ActorEstimate("rollout")], gpus=2)
    >>> planned_seats([gpu, pair])
    {'policy': Seat(node='plan', gpus=('0',)), 'rollout': Seat(node='plan', gpus=('1', '2'))}
    """
    seats: dict[str, Seat] = {}
    first = 0
    for device in devices:
        gpus = tuple(str(first + i) for i in range(device.gpus))
        first += device.gpus
        for actor in device.actors:
            seats[actor.name] = Seat("plan", gpus)
    return seats


def planned_transports(
    requested: str, seats: dict[str, Seat], policy: Sequence[str], workers: Sequence[str], engine: str, tp: int = 1
) -> dict[str, str]:
    """The transport to each rollout worker (by name) from the planned seats."""
    ranks = [seats[name] for name in policy]
    return {name: choose_transport(requested, seats[name], ranks, engine, tp) for name in workers}


def check_seats(planned: dict[str, str], actual: dict[str, Seat], policy: Sequence[str], engine: str, tp: int) -> None:
    """The devices Ray gave still allow each planned transport (a placement group keeps the
    plan's packing; this catches a cluster that placed otherwise)."""
    ranks = [actual[name] for name in policy]
    for name, transport in planned.items():
        if transport == "object_store":
            continue
        try:
            choose_transport(transport, actual[name], ranks, engine, tp)
        except TransportError as error:
            raise TransportError(f"{name}: planned {transport}, but Ray placed it otherwise: {error}") from None

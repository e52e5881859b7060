"""The HF engine's GPU weight transports, built on torch alone: both halves of each.

They have the shape of vLLM's weight-transfer engines (`rollout/transfer.py` drives both
kinds the same way): the trainer half is made on every policy rank with a client (the
rollout actor's four calls: `init_weight_transfer_engine`, `start_weight_update`,
`update_weights`, `finish_weight_update`) and a source (`transfer.CheckpointSource`);
rank 0 sends, the other ranks only iterate the source (under ZeRO-3 each tensor is a
gather they take part in).

- `broadcast`: a process group of two (rank 0 and the engine) of its own, on its own TCP
  store, and one `broadcast` per tensor: NCCL between GPUs (`rollout.weight_transport=nccl`);
  the same code over gloo runs on CPU, which is how the tests exercise it.
- `ipc`: CUDA IPC handles of rank 0's tensors (`torch.multiprocessing.reductions`), opened
  by an engine on the same GPU and copied into its weights. Never ran here (no GPU).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import torch

from .weight_sync import WeightSyncError

logger = logging.getLogger(__name__)

Load = Callable[[Iterable[tuple[str, torch.Tensor]]], None]
TIMEOUT = datetime.timedelta(minutes=10)


class SyncClient(Protocol):
    """The rollout actor's side of a transfer, as the trainer half calls it."""

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None: ...
    def start_weight_update(self) -> None: ...
    def update_weights(self, update_info: dict[str, Any]) -> None: ...
    def finish_weight_update(self, weight_version: str | None = None) -> None: ...


def pair_group(backend: str, address: str, port: int, rank: int) -> Any:
    """A process group of two, rank 0 the sender, on a TCP store of its own (so it lives
    beside the policy ranks' default group)."""
    import torch.distributed as dist

    store = dist.TCPStore(address, port, 2, is_master=rank == 0, timeout=TIMEOUT)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, 2, TIMEOUT)
    if backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, 2)
    raise ValueError(f"a weight broadcast runs over nccl (GPUs) or gloo (CPU), not {backend!r}")


def broadcast(group: Any, tensor: torch.Tensor, timeout: datetime.timedelta = TIMEOUT) -> None:
    """Rank 0's `tensor` into every rank's (in place; contiguous)."""
    import torch.distributed as dist

    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait(timeout)


def metadata_payload(meta) -> dict[str, list]:
    return {
        "names": [m.name for m in meta],
        "dtype_names": [str(m.dtype).removeprefix("torch.") for m in meta],
        "shapes": [list(m.shape) for m in meta],
    }


# ---------------------------------------------------------------- trainer halves
class BroadcastTrainer:
    """Rank 0 broadcasts each tensor of the source to the engine (the others iterate it)."""

    def __init__(self, client: SyncClient, source, is_sender: bool, group: Any = None) -> None:
        self.client, self.source, self.is_sender, self.group = client, source, is_sender, group

    @classmethod
    def trainer_init(cls, init_info: dict[str, Any], *, client: SyncClient, source) -> BroadcastTrainer:
        if init_info["rank"] != 0:
            return cls(client, source, is_sender=False)
        worker_info = {key: init_info[key] for key in ("backend", "master_address", "master_port")}
        # The engine blocks in the rendezvous until rank 0 joins: start it beside us.
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, worker_info)
            group = pair_group(init_info["backend"], init_info["master_address"], init_info["master_port"], 0)
            joined.result()
        return cls(client, source, is_sender=True, group=group)

    def send_weights(self) -> None:
        if not self.is_sender:
            for _ in self.source:  # a gather under ZeRO-3 rank 0 waits for
                pass
            return
        self.client.start_weight_update()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            # The engine receives inside the same broadcasts: its call runs beside ours.
            received = pool.submit(self.client.update_weights, metadata_payload(self.source.metadata()))
            bound = datetime.timedelta(seconds=getattr(self.client, "timeout_s", TIMEOUT.total_seconds()))
            try:
                for _, tensor in self.source:
                    broadcast(self.group, tensor.detach().contiguous(), bound)
            except RuntimeError as error:  # the engine never joined the broadcast, or left it
                name = getattr(self.client, "name", "the rollout worker")
                raise WeightSyncError(f"the weight broadcast to {name} did not complete: {error}") from None
            received.result()
        finally:
            pool.shutdown(wait=False)  # a failed broadcast leaves the engine blocked in it: never wait
        self.client.finish_weight_update()


class IPCTrainer:
    """Rank 0 sends CUDA IPC handles of its tensors; the engine on its GPU copies them."""

    def __init__(self, client: SyncClient, source, is_sender: bool) -> None:
        self.client, self.source, self.is_sender = client, source, is_sender

    @classmethod
    def trainer_init(cls, init_info: dict[str, Any], *, client: SyncClient, source) -> IPCTrainer:
        sender = init_info["rank"] == 0
        if sender:
            client.init_weight_transfer_engine({"backend": "ipc"})
        return cls(client, source, sender)

    def send_weights(self) -> None:
        from torch.multiprocessing.reductions import reduce_tensor

        if not self.is_sender:
            for _ in self.source:
                pass
            return
        self.client.start_weight_update()
        meta = self.source.metadata()
        held, handles = [], []
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        for _, tensor in self.source:
            copy = tensor.detach().clone()  # a gathered ZeRO-3 tensor is freed after its bucket
            held.append(copy)
            handles.append({uuid: reduce_tensor(copy)[1]})
        self.client.update_weights({**metadata_payload(meta), "ipc_handles": handles})
        self.client.finish_weight_update()
        torch.cuda.synchronize()
        del held  # the engine has copied them


TRAINERS = {"nccl": BroadcastTrainer, "gloo": BroadcastTrainer, "ipc": IPCTrainer}


# ----------------------------------------------------------------- engine halves
class BroadcastReceiver:
    """The engine's half of `BroadcastTrainer`: receives each tensor, loads it by name."""

    def __init__(self, init_info: dict[str, Any], device: torch.device) -> None:
        self.device = device
        self.group = pair_group(init_info["backend"], init_info["master_address"], init_info["master_port"], 1)

    def receive(self, update_info: dict[str, Any], load: Load) -> None:
        load(self._tensors(update_info))

    def _tensors(self, update_info: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, dtype, shape in zip(update_info["names"], update_info["dtype_names"], update_info["shapes"]):
            buffer = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            broadcast(self.group, buffer)
            yield name, buffer


class IPCReceiver:
    """The engine's half of `IPCTrainer`: opens each handle on its own GPU and copies it."""

    def __init__(self, init_info: dict[str, Any], device: torch.device) -> None:
        self.device = device
        self.uuid = str(torch.cuda.get_device_properties(device).uuid)

    def receive(self, update_info: dict[str, Any], load: Load) -> None:
        load(self._tensors(update_info))

    def _tensors(self, update_info: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        from torch.multiprocessing.reductions import rebuild_cuda_tensor

        for name, handle in zip(update_info["names"], update_info["ipc_handles"]):
            if self.uuid not in handle:
                raise RuntimeError(f"weight {name!r} was shared from another GPU than this engine's ({self.uuid})")
            args = list(handle[self.uuid])
            args[6] = self.device.index or 0  # the sender's device index is its own process's numbering
            yield name, rebuild_cuda_tensor(*args)


RECEIVERS = {"nccl": BroadcastReceiver, "gloo": BroadcastReceiver, "ipc": IPCReceiver}


def receiver(init_info: dict[str, Any], device: torch.device) -> BroadcastReceiver | IPCReceiver:
    backend = init_info.get("backend")
    if backend not in RECEIVERS:
        raise ValueError(f"unknown weight transport {backend!r} for the HF engine")
    return RECEIVERS[backend](init_info, device)

"""The policy's weights to the rollout engines: in buckets, versioned, confirmed.

After every update the policy's parameters go to every rollout worker in buckets of about
`bucket_bytes` (never the whole state dict as one object: a 4 GB object at 2B, and
torch tensors through Ray's object store are copied two to three times on the way in).
A bucket carries each tensor's raw bytes as a numpy array, which Ray hands to its readers
without a copy, and its name, dtype and shape to rebuild it. Every bucket names the sync's
`version` and its place (`index` of `count`); a worker holds a version only once it has
taken every bucket of it, and says which version it holds after the last one: the driver
compares it with the one it sent, so a sync that did not happen stops the run instead of
leaving the workers sampling from stale weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_BUCKET_BYTES = 256 * 2**20


class WeightSyncError(RuntimeError):
    """A sync that did not reach a worker whole."""


@dataclass
class WeightBucket:
    """Some of the policy's parameters, as raw bytes with what rebuilds them."""

    version: int
    index: int
    count: int
    names: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    def tensors(self, device: str | torch.device = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in the parameters' dtype and shape, on `device`."""
        for name, dtype, shape, array in zip(self.names, self.dtypes, self.shapes, self.arrays):
            raw = torch.from_numpy(np.asarray(array))  # read-only where Ray shares it: only read
            yield name, raw.view(getattr(torch, dtype)).view(shape).to(device)


def checkpoint_named_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's parameters (a tied weight once) under the names its checkpoint files give
    them, which every engine loads: transformers 5 renames some in memory (Qwen2-VL's
    `visual.*` is `model.visual.*`, `model.layers.*` is `model.language_model.layers.*`)."""
    named = dict(model.named_parameters())
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without renaming: the names are the checkpoint's
        return list(named.items())
    reverted = revert_weight_conversion(model, dict(named))
    by_tensor = {id(tensor): tensor for tensor in named.values()}
    if len(reverted) != len(named) or any(id(tensor) not in by_tensor for tensor in reverted.values()):
        raise WeightSyncError(
            f"{type(model).__name__}'s checkpoint format merges or splits parameters: "
            "weight syncs send only renamed ones"
        )
    return list(reverted.items())


def whole_bytes(parameter: torch.nn.Parameter) -> int:
    """A parameter's bytes when whole (a ZeRO-3 shard's `numel()` is its own part; `ds_numel`
    is the whole parameter's)."""
    return getattr(parameter, "ds_numel", parameter.numel()) * parameter.element_size()


def bucket_layout(sizes: Sequence[int], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[list[int]]:
    """Indices of consecutive tensors grouped into buckets of at most `bucket_bytes` (a tensor
    larger than that is a bucket alone).

    >>> bucket_layout([4, 4, 4, 10, 1], bucket_bytes=8)
    [[0, 1], [2], [3], [4]]
    """
    buckets: list[list[int]] = []
    filled = 0
    for index, size in enumerate(sizes):
        if buckets and filled + size <= bucket_bytes:
            buckets[-1].append(index)
            filled += size
        else:
            buckets.append([index])
            filled = size
    return buckets


def pack(named: Sequence[tuple[str, torch.Tensor]], version: int, index: int, count: int) -> WeightBucket:
    """A bucket of CPU byte copies of `named` tensors."""
    bucket = WeightBucket(version, index, count)
    with torch.no_grad():
        for name, tensor in named:
            data = tensor.detach().to(device="cpu").contiguous()
            bucket.names.append(name)
            bucket.dtypes.append(str(data.dtype).removeprefix("torch."))
            bucket.shapes.append(tuple(data.shape))
            bucket.arrays.append(data.view(-1).view(torch.uint8).numpy())
    return bucket


class WeightSender:
    """The policy's side: its parameters, laid out in buckets once, sent in the dtype they
    are in (the policy holds its weights in the dtype the engines compute in)."""

    def __init__(self, model: torch.nn.Module, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.named = checkpoint_named_parameters(model)  # a tied weight once
        sizes = [whole_bytes(p) for _, p in self.named]
        self.layout = bucket_layout(sizes, bucket_bytes)

    @property
    def count(self) -> int:
        return len(self.layout)

    def parameters(self, index: int) -> list[torch.nn.Parameter]:
        """The parameters of bucket `index` (what a ZeRO-3 rank gathers to send it)."""
        return [self.named[i][1] for i in self.layout[index]]

    def bucket(self, index: int, version: int) -> WeightBucket:
        return pack([self.named[i] for i in self.layout[index]], version, index, self.count)


class WeightReceiver:
    """A worker's side: takes buckets into its engine and knows which version it holds."""

    def __init__(self) -> None:
        self.version = 0  # the last version taken whole (0: the weights it started with)
        self._pending: tuple[int, set[int]] | None = None  # (version, bucket indices taken)

    def take(self, bucket: WeightBucket, load, finish=None) -> int | None:
        """Load one bucket with `load(named_tensors)`; after the version's last bucket,
        `finish()` and the version now held (None before it). A bucket of an older version
        than the one in progress, or a version that ends with buckets missing, is an error."""
        if self._pending is None or self._pending[0] != bucket.version:
            if self._pending is not None and self._pending[0] > bucket.version:
                raise WeightSyncError(f"bucket of version {bucket.version} after version {self._pending[0]} began")
            self._pending = (bucket.version, set())
        load(bucket.tensors())
        taken = self._pending[1]
        taken.add(bucket.index)
        if bucket.index != bucket.count - 1:
            return None
        missing = sorted(set(range(bucket.count)) - taken)
        self._pending = None
        if missing:
            raise WeightSyncError(f"weight sync {bucket.version} ended without bucket(s) {missing}")
        if finish is not None:
            finish()
        self.version = bucket.version
        return self.version

    def hold(self, version: int) -> int:
        """A version taken whole another way (a direct transport's last step)."""
        if version <= self.version:
            raise WeightSyncError(f"weight sync {version} after version {self.version}: versions only grow")
        self.version = version
        return version

"""RolloutActor: the rollout engine `rollout.engine` names, in its own Ray actor; samples G
completions per prompt and takes the policy's weights after every update, confirming the
version it now holds."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ..models.encoding import EncodedPrompt
from ..models.generation import SamplingConfig
from ..rollout import Completion, build_engine
from ..rollout.transport import Seat
from ..rollout.weight_sync import WeightBucket, WeightReceiver
from .base import start_actor
from .placement import assigned_device, current_seat

logger = logging.getLogger(__name__)


class RolloutActor:
    def __init__(
        self,
        model_path: str,
        engine: str = "hf",
        dtype: str = "float32",
        max_pixels: int | None = None,
        torch_threads: int = 0,
        engine_options: dict | None = None,
        device: str | None = None,
    ) -> None:
        device = device or assigned_device()  # None: the GPU Ray assigned this actor, or the CPU
        self.memory = start_actor(model_path, torch_threads, device, engine)
        self.engine = build_engine(
            engine, model_path=model_path, dtype=dtype, max_pixels=max_pixels, device=device, **(engine_options or {})
        )
        self.weights = WeightReceiver()
        self.engine_name, self.device = engine, device
        logger.info("RolloutActor (%s engine) loaded %s on %s (pid %d)", engine, model_path, device, os.getpid())

    def ready(self) -> bool:
        return True

    def seat(self) -> Seat:
        """The node and GPUs this worker computes on (the transport is checked against it)."""
        return current_seat()

    def describe(self) -> dict[str, str]:
        """Its engine and the device it computes on."""
        return {"engine": self.engine_name, "device": self.device}

    def peak_memory(self) -> float | None:
        """Bytes at the peak since the last call (the driver asks once per step)."""
        return self.memory.take()

    def generate(
        self, prompts: Sequence[EncodedPrompt], sampling: SamplingConfig, seeds: Sequence[Sequence[int]]
    ) -> list[list[Completion]]:
        """A group per prompt, `len(seeds[i])` completions of prompt i, each from its seed."""
        completions = self.engine.generate(prompts, sampling, seeds)
        self.memory.mark()  # the sync that follows maps its buckets: see PeakMemory
        return completions

    def load_weights(self, bucket: WeightBucket) -> int | None:
        """Take one bucket of a weight sync; after its last bucket, the version this worker
        now holds (which the driver checks against the one it sent), None before."""
        return self.weights.take(bucket, self.engine.load_weights, self.engine.finish_sync)

    # A direct weight transport (`rollout.weight_transport` ipc or nccl): the trainer half
    # (`rollout/transfer.py`, on the policy ranks) calls these four, then the driver asks
    # `weights_version`.
    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self.engine.init_transfer(init_info)

    def start_weight_update(self) -> None:
        self.engine.start_transfer()

    def update_weights(self, update_info: dict) -> None:
        self.engine.receive(update_info)

    def finish_weight_update(self, version: int) -> int:
        self.engine.finish_transfer()
        return self.weights.hold(version)

    def weights_version(self) -> int:
        """The last sync version this worker took whole."""
        return self.weights.version

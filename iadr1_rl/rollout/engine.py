"""The rollout interface every engine implements, and the registry `rollout.engine` names."""

from __future__ import annotations

import hashlib
import importlib
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..models.encoding import EncodedPrompt
from ..models.generation import SamplingConfig

FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    """One sampled completion: its token ids (the end-of-turn token included when the model
    stopped), its text, why it ended, and each token's log-prob under the distribution it
    was sampled from (None when the engine does not report them)."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[float] | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def sample_seed(seed: int, step: int, place: int, index: int) -> int:
    """The seed of one completion: sample `index` of the prompt at `place` in `step`'s batch
    of a run seeded `seed`. A function of those four alone (so a resumed run, or one with
    another number of rollout workers, draws what the uninterrupted one did) and, being a
    hash of them, shared with no other completion (a seed per prompt plus the sample's index,
    as vLLM derives its samples' seeds, gave sample j + 1 of one prompt the draws of sample
    j of the next).

    >>> sample_seed(0, 1, 0, 1) == sample_seed(0, 1, 0, 1) != sample_seed(0, 1, 1, 0)
    True
    """
    digest = hashlib.blake2b(struct.pack("<4q", seed, step, place, index), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: what every engine's generator takes


def sample_seeds(seed: int, step: int, places: Sequence[int], group_size: int) -> list[list[int]]:
    """`group_size` completion seeds for each prompt, by its place in the step's batch."""
    return [[sample_seed(seed, step, place, index) for index in range(group_size)] for place in places]


def grouped(completions: Sequence[Completion], seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
    """Completions made one per seed, in order, as one group per prompt.

    >>> grouped(list("abcde"), [[1, 2], [3], [4, 5]])
    [['a', 'b'], ['c'], ['d', 'e']]
    """
    out, start = [], 0
    for per_prompt in seeds:
        out.append(list(completions[start : start + len(per_prompt)]))
        start += len(per_prompt)
    return out


class RolloutEngine(ABC):
    """Samples groups of completions and takes new weights in place."""

    @classmethod
    def import_code(cls) -> None:
        """Import the libraries the engine runs on (before a process measures its baseline)."""
        return None

    @abstractmethod
    def generate(
        self, prompts: Sequence[EncodedPrompt], sampling: SamplingConfig, seeds: Sequence[Sequence[int]]
    ) -> list[list[Completion]]:
        """One group per prompt, in order, of `len(seeds[i])` completions of prompt i, drawn
        as `sampling` says (greedy where `do_sample` is false), each from its own seed's
        stream (`sample_seeds`): a completion depends on its seed and its prompt only."""

    @abstractmethod
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Take these parameters (some or all, by their checkpoint names: one bucket of a sync)."""

    def finish_sync(self) -> None:
        """After a sync's last bucket: whatever makes the new weights the ones that sample
        (an engine that loads at once has nothing to do)."""
        return None

    # A direct transport's four steps (`rollout.weight_transport` ipc or nccl), as vLLM's
    # weight-transfer engines name them: the trainer half (`rollout/transfer.py`) calls them.
    def init_transfer(self, init_info: dict) -> None:
        """Join the trainer's transport (a broadcast's rendezvous, an IPC handshake)."""
        raise NotImplementedError(f"{type(self).__name__} takes weights through the object store only")

    def start_transfer(self) -> None:
        """Before a sync's tensors arrive."""
        return None

    def receive(self, update_info: dict) -> None:
        """Take the tensors `update_info` announces (all of a sync's, or a chunk of them)."""
        raise NotImplementedError(f"{type(self).__name__} takes weights through the object store only")

    def finish_transfer(self) -> None:
        """After a sync's last tensor: the new weights are the ones that sample."""
        self.finish_sync()


# `rollout.engine` → "module:class" in this package, imported only when chosen.
ENGINES = {"hf": "hf:HFEngine", "vllm": "vllm:VLLMEngine"}


def engine_class(name: str) -> type[RolloutEngine]:
    """The class `rollout.engine` names, its module (and what it imports) loaded."""
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; choose from {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    engine = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    engine.import_code()
    return engine


def build_engine(name: str, **kwargs) -> RolloutEngine:
    """The engine `rollout.engine` names, built with the model's settings."""
    return engine_class(name)(**kwargs)

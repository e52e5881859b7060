"""The rollout interface every engine implements, and the registry `rollout.engine` names."""

from __future__ import annotations

import importlib
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


class RolloutEngine(ABC):
    """Samples groups of completions and takes new weights in place."""

    @classmethod
    def import_code(cls) -> None:
        """Import the libraries the engine runs on (before a process measures its baseline)."""
        return None

    @abstractmethod
    def generate(
        self, prompts: Sequence[EncodedPrompt], group_size: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Completion]]:
        """`group_size` completions per prompt, drawn as `sampling` says (rollouts sample;
        greedy where `do_sample` is false): one group per prompt, in order. The draws depend
        on `seed` only, so a resumed run samples what the uninterrupted one did."""

    @abstractmethod
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Take these parameters (some or all, by their checkpoint names: one bucket of a sync)."""

    def finish_sync(self) -> None:
        """After a sync's last bucket: whatever makes the new weights the ones that sample
        (an engine that loads at once has nothing to do)."""
        return None


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

"""TRL: the SC-GRPO reward as four reward functions for `GRPOTrainer`.

    from trl import GRPOConfig, GRPOTrainer
    from rewards.integrations.trl import reward_functions

    trainer = GRPOTrainer(model, reward_funcs=reward_functions(), train_dataset=dataset, args=GRPOConfig(...))

The functions are named `consistency`, `accuracy`, `location` and `type`, so TRL logs
`rewards/<name>/mean` and `/std` for each part, and `GRPOConfig(reward_weights=…)` can
weight them. Each returns its part times the scorer's weight, with the gate applied
(location and type count only once an anomaly is detected): the four sum to the
`Scorer` total. They read the label from the dataset column `label_key` (a dict, its JSON
text or the paper's solution string) and take plain or conversational completions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..result import PARTS
from ..scorer import Scorer

RewardFunction = Callable[..., list[float]]
TRL_ARGUMENTS = frozenset({"trainer_state", "log_extra", "log_metric", "completion_ids", "environments"})


def reward_functions(scorer: Scorer | None = None, label_key: str = "label") -> list[RewardFunction]:
    """Four TRL reward functions, one per part of `scorer`'s reward (default: the contract's).

    >>> functions = reward_functions()
    >>> [f.__name__ for f in functions]
    ['consistency', 'accuracy', 'location', 'type']
    >>> completion = [{"role": "assistant", "content": "<think>fine</think><answer>no</answer>"}]
    >>> [f(prompts=["p"], completions=[completion], label=[{"answer": "no"}])[0] for f in functions]
    [1.0, 1.0, 0.0, 0.0]
    """
    scorer = scorer or Scorer()
    return [_part_function(scorer, part, label_key) for part in PARTS]


def _part_function(scorer: Scorer, part: str, label_key: str) -> RewardFunction:
    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        if label_key not in kwargs:
            columns = sorted(set(kwargs) - TRL_ARGUMENTS)
            raise ValueError(f"the dataset has no {label_key!r} column (it has {columns}); pass label_key=…")
        # Scored once per part: the scorer parses each distinct label once and scores
        # ~100,000 completions a second, far below the cost of generating them.
        return [result.weighted(scorer.weights)[part] for result in scorer.score_batch(completions, kwargs[label_key])]

    reward.__name__ = reward.__qualname__ = part
    reward.__doc__ = f"The {part} part of the SC-GRPO reward, weighted and gated (scorer {scorer.digest})."
    return reward

"""verl: `compute_score` for verl's custom reward function.

    python -m verl.trainer.main_ppo … \\
        reward.custom_reward_function.path=$PWD/rewards/integrations/verl.py \\
        reward.custom_reward_function.name=compute_score \\
        [+reward.custom_reward_function.reward_kwargs.scorer_config=runs/…/scorer.json]

(Older verl releases name the keys `custom_reward_function.path` and `.name` at the top
level.) verl loads this file by path in its reward workers and calls it once per sample
with the decoded response and the row's `reward_model.ground_truth` (the label: a dict,
its JSON text or a solution string, as `iadr1-data export --to verl` writes it). It
returns the total as `score` and each weighted, gated part beside it, which verl keeps as
`reward_extra_info` and logs per key.
"""

from __future__ import annotations

from typing import Any

from rewards.integrations.common import parts_of, scorer_for


def compute_score(
    data_source: str | None,
    solution_str: Any,
    ground_truth: Any,
    extra_info: dict | None = None,
    scorer_config: str | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """`{"score", "consistency", "accuracy", "location", "type", "normalised"}` of one response.

    >>> result = compute_score("MVTec", "<think>fine</think><answer>no</answer>", '{"answer": "no"}')
    >>> result["score"], result["consistency"], result["normalised"]
    (2.0, 1.0, 1.0)
    """
    scorer = scorer_for(scorer_config)
    parts = parts_of(scorer, scorer.score(solution_str, ground_truth))
    return {"score": parts.pop("total"), **parts}

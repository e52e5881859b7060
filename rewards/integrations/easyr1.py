"""EasyR1: a batch reward-function file.

    python -m verl.trainer.main config=… \\
        worker.reward.reward_function=$PWD/rewards/integrations/easyr1.py:compute_score \\
        [worker.reward.reward_function_kwargs='{"scorer_config": "runs/…/scorer.json"}']

EasyR1 loads this file by path, reads `REWARD_TYPE` ("batch": the whole batch in one call)
and calls `compute_score` with a list of `{"response", "response_length",
"ground_truth"}`; the ground truth is the dataset's answer column (our label: a dict, its
JSON text or a solution string). Each result has `overall` (the total) and each weighted,
gated part, which EasyR1 logs per key.
"""

from __future__ import annotations

from typing import Any

from rewards.integrations.common import parts_of, scorer_for

REWARD_NAME = "iadr1_sc_grpo"
REWARD_TYPE = "batch"


def compute_score(reward_inputs: list[dict[str, Any]], scorer_config: str | None = None) -> list[dict[str, float]]:
    """One `{"overall", "consistency", "accuracy", "location", "type", "normalised"}` per input.

    >>> compute_score([{"response": "<think>x</think><answer>no</answer>", "response_length": 9,
    ...                 "ground_truth": "<think>t</think><answer>no</answer>"}])[0]["overall"]
    2.0
    """
    if not isinstance(reward_inputs, list):
        raise TypeError(f"REWARD_TYPE is 'batch': expected a list of reward inputs, got {type(reward_inputs).__name__}")
    scorer = scorer_for(scorer_config)
    results = scorer.score_batch(
        [item["response"] for item in reward_inputs], [item["ground_truth"] for item in reward_inputs]
    )
    parts = [parts_of(scorer, result) for result in results]
    return [{"overall": part.pop("total"), **part} for part in parts]

"""OpenRLHF reward function: `--reward.remote_url rewards/openrlhf_reward.py`.

OpenRLHF loads this file by path (not as a package module) and calls
`reward_func(queries, prompts, labels)` from worker threads. The scorer is built once
per process; set `IADR1_SCORER_CONFIG` to a JSON/YAML scorer config (grid, weights,
vocabulary) to change it.

Returns OpenRLHF's dict: `rewards` (the SC-GRPO total), `scores` (total / max, in
[0, 1]) and `extra_logs` with every part, as torch tensors when torch is importable
(as OpenRLHF's own examples do) and plain lists otherwise.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

try:
    from rewards.protocol import score_queries
    from rewards.scorer import Scorer
except ImportError:  # loaded by path from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rewards.protocol import score_queries
    from rewards.scorer import Scorer

CONFIG_ENV = "IADR1_SCORER_CONFIG"

_scorer: Scorer | None = None
_lock = threading.Lock()


def get_scorer() -> Scorer:
    """The process-wide scorer, built on first use from `$IADR1_SCORER_CONFIG`."""
    global _scorer
    if _scorer is None:
        with _lock:
            if _scorer is None:
                _scorer = Scorer.from_config(os.environ.get(CONFIG_ENV) or None)
    return _scorer


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's entry point. Labels may be dicts, JSON strings or solution strings."""
    result = score_queries(get_scorer(), list(queries), list(prompts), list(labels))
    try:
        import torch
    except ImportError:
        return result
    return {
        "rewards": torch.tensor(result["rewards"], dtype=torch.float32),
        "scores": torch.tensor(result["scores"], dtype=torch.float32),
        "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in result["extra_logs"].items()},
    }

"""OpenRLHF reward function: `--reward.remote_url rewards/integrations/openrlhf.py`.

OpenRLHF loads this file by path (not as a package module; the `rewards` package must be
importable in its workers: installed, or the checkout as the Ray job's working dir) and calls
`reward_func(queries, prompts, labels)` from worker threads. It scores in-process with the
scorer of `IADR1_SCORER_CONFIG` (the run's `scorer.json`; the contract's defaults when
unset), built once per process.

With `IADR1_REWARD_URL` set (`http://HOST:PORT/get_reward`) it forwards every batch to that
reward server instead, with `Authorization: Bearer` from `IADR1_REWARD_TOKEN` or
`IADR1_REWARD_TOKEN_FILE` (OpenRLHF's own HTTP client sends no headers, so it cannot reach
a protected server), a timeout (`IADR1_REWARD_TIMEOUT`, 60 s) and a few attempts
(`IADR1_REWARD_ATTEMPTS`, 3). It first checks that the server scores with this run's
configuration. A failure is an error naming the server: never a silent default reward.

Returns OpenRLHF's dict: `rewards` (the SC-GRPO total), `scores` (total / max, in [0, 1])
and `extra_logs` with every part, as torch tensors when torch is importable (as OpenRLHF's
own examples do) and plain lists otherwise.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rewards.integrations.common import scorer_for
from rewards.remote import ENV_URL, RemoteScorer
from rewards.scorer import Scorer
from rewards.wire import score_queries

_remote: RemoteScorer | None = None
_lock = threading.Lock()


def get_scorer() -> Scorer:
    """The process-wide scorer of `$IADR1_SCORER_CONFIG`, built on first use."""
    return scorer_for()


def get_remote() -> RemoteScorer | None:
    """The reward server of `$IADR1_REWARD_URL`, checked once to score as this run does."""
    global _remote
    if _remote is None and os.environ.get(ENV_URL):
        with _lock:
            if _remote is None:
                remote = RemoteScorer.from_env(os.environ)
                remote.check(get_scorer().digest)
                _remote = remote
    return _remote


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's entry point. Labels may be dicts, JSON strings or solution strings."""
    remote = get_remote()
    if remote is not None:
        result = remote.score_queries(queries, prompts, labels)
    else:
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

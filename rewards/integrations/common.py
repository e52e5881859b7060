"""What the framework adapters share: the scorer of a configuration, built once per process.

A framework loads an adapter file by path in each of its workers; each asks here for the
scorer of its configuration (an explicit path or mapping, else `$IADR1_SCORER_CONFIG`, the
run's `scorer.json`, else the contract's defaults) and gets the same one every time.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rewards.result import ScoreResult
from rewards.scorer import SCORER_CONFIG_ENV, Scorer

_scorers: dict[str, Scorer] = {}
_lock = threading.Lock()


def scorer_for(config: str | Path | Mapping[str, Any] | Scorer | None = None) -> Scorer:
    """The process-wide scorer of `config` (default: `$IADR1_SCORER_CONFIG`, else the contract)."""
    if isinstance(config, Scorer):
        return config
    if config is None:
        config = os.environ.get(SCORER_CONFIG_ENV) or None
    key = json.dumps(config, sort_keys=True) if isinstance(config, Mapping) else str(config)
    scorer = _scorers.get(key)
    if scorer is None:
        with _lock:
            scorer = _scorers.get(key)
            if scorer is None:
                scorer = _scorers[key] = Scorer.from_config(config)
    return scorer


def parts_of(scorer: Scorer, result: ScoreResult) -> dict[str, float]:
    """A score as frameworks log it: the total, each part times its weight with the gate
    applied (they sum to the total), and the total over its maximum."""
    return {"total": result.total, **result.weighted(scorer.weights), "normalised": result.normalised}

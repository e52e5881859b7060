"""Console-script entry points of `iadr1-data` and `iadr1-eval`: a missing extra is one
line naming the install command (`rewards.launch`), not a traceback."""

from __future__ import annotations

from rewards.launch import run_entry_point


def data() -> int:
    return run_entry_point("iadr1_rl.data.cli:main", "iadr1-data")


def evaluate() -> int:
    return run_entry_point("iadr1_rl.eval.cli:main", "iadr1-eval")

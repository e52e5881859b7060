"""Checkpoints written atomically, so a killed job loses at most the steps since the last.

`<run>/checkpoints/step_000050/` holds the policy (an HF folder), the optimizer and
scheduler state and `trainer_state.json` (step, data position, RNG seeds). It is
written under a temporary name and renamed when complete; `latest` names the newest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..data.records import atomic_open

STATE_FILE = "trainer_state.json"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoint_root(run_dir) / f"step_{step:06d}"


def staging_dir(run_dir: str | Path, step: int) -> Path:
    """Where a checkpoint is written before it is published (removed if left half-done)."""
    path = checkpoint_root(run_dir) / f".tmp_step_{step:06d}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def publish(run_dir: str | Path, staging: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the trainer state, rename staging into place, point `latest` at it, prune."""
    with atomic_open(staging / STATE_FILE) as out:
        json.dump({"step": step, **state}, out, indent=2)
    final = step_dir(run_dir, step)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    with atomic_open(checkpoint_root(run_dir) / "latest") as out:
        out.write(final.name + "\n")
    if keep > 0:
        for old in sorted(checkpoint_root(run_dir).glob("step_*"))[:-keep]:
            shutil.rmtree(old)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    root = checkpoint_root(run_dir)
    pointer = root / "latest"
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / STATE_FILE).is_file():
            return candidate
    complete = [p for p in sorted(root.glob("step_*")) if (p / STATE_FILE).is_file()]
    return complete[-1] if complete else None


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())

"""Checkpoints written atomically and durably, so a killed job loses at most the steps
since the last, and a resumed run is the run that wrote them.

`<run>/checkpoints/step_000050/` holds the policy (an HF folder), the optimizer and
scheduler state and `trainer_state.json` (step, stage, seed and the config values that
make the run). It is written under a temporary name, flushed to disk, then renamed;
`latest` names the newest. `final/` is published the same way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..data.records import atomic_open, fsync_path

STATE_FILE = "trainer_state.json"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoint_root(run_dir) / f"step_{step:06d}"


def staging_dir(parent: str | Path, name: str) -> Path:
    """An empty folder to write into before publishing (a half-written one is removed)."""
    path = Path(parent) / f".tmp_{name}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def fsync_tree(folder: Path) -> None:
    """Every file and folder under `folder` on disk, the folder itself last."""
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(root)


def publish(run_dir: str | Path, staging: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the trainer state, flush, rename staging into place, point `latest` at it, prune."""
    with atomic_open(staging / STATE_FILE) as out:
        json.dump({"step": step, **state}, out, indent=2)
    fsync_tree(staging)
    final = step_dir(run_dir, step)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    fsync_path(final.parent)
    with atomic_open(checkpoint_root(run_dir) / "latest") as out:
        out.write(final.name + "\n")
    if keep > 0:
        for old in sorted(checkpoint_root(run_dir).glob("step_*"))[:-keep]:
            shutil.rmtree(old)
    return final


def publish_folder(staging: Path, target: Path) -> Path:
    """Replace `target` with the flushed `staging` folder: never a half-written target."""
    fsync_tree(staging)
    old = target.with_name(f".old_{target.name}")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    fsync_path(target.parent)
    if old.exists():
        shutil.rmtree(old)
    return target


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


def check_same_run(checkpoint: Path, stage: str, seed: int, identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's state, or ValueError when another run (or stage) wrote it."""
    state = read_state(checkpoint)
    mine = {"stage": stage, "seed": seed, **{f"config {k}": v for k, v in identity.items()}}
    theirs = {"stage": state.get("stage"), "seed": state.get("seed")}
    theirs.update({f"config {k}": v for k, v in (state.get("identity") or {}).items()})
    differences = [
        f"{key}: {theirs.get(key)!r} there, {value!r} here" for key, value in mine.items() if theirs.get(key) != value
    ]
    if differences:
        raise ValueError(
            f"{checkpoint} belongs to another run ({'; '.join(differences[:6])}): resume with the settings that "
            "wrote it, or start in a new output folder (without --resume)"
        )
    return state

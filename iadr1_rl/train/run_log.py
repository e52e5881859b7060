"""Per-step metrics: a JSONL log, TensorBoard events, and PNG curves at the end."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class RunLogger:
    """Append metrics per step to `<dir>/metrics.jsonl` and TensorBoard; draw curves."""

    def __init__(self, directory: str | Path, resume_step: int = 0, trackers=None) -> None:
        self.directory = Path(directory)
        self.trackers = trackers  # `trackers.Trackers` (log.to), fed what the log gets
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.jsonl"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            # Keep what the resumed checkpoint had seen; later lines are redone.
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if row.get("step", 0) <= resume_step:
                    self.rows.append(row)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.directory / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # pragma: no cover - tensorboard is in the train extra
            logger.warning("tensorboard is not installed: no event files")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._writer is not None:
            for key, value in metrics.items():
                if math.isfinite(float(value)):
                    self._writer.add_scalar(key, float(value), step)
            self._writer.flush()
        if self.trackers is not None:
            self.trackers.log(step, row_without_step(row))

    def event(self, step: int, kind: str, **fields: Any) -> dict[str, Any]:
        """Something that happened to the run (a restart): a line in `events.jsonl` beside
        the metrics, and a text entry in TensorBoard at `step`."""
        row = {"event": kind, "step": step, "time": time.time(), **fields}
        with (self.directory / "events.jsonl").open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._writer is not None:
            text = ", ".join(f"{key}: {value}" for key, value in fields.items())
            self._writer.add_text(kind, text, step)
            self._writer.flush()
        if self.trackers is not None:
            self.trackers.event(step, kind, fields)
        return row

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def plot(self, keys: list[str], path: str | Path | None = None, title: str = "") -> Path | None:
        """One panel per metric present in the log; returns the PNG path."""
        keys = [k for k in keys if any(k in r for r in self.rows)]
        if not keys:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        columns = min(3, len(keys))
        rows = math.ceil(len(keys) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
        for axis, key in zip(axes.flat, keys):
            points = [(r["step"], r[key]) for r in self.rows if key in r]
            axis.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2)
            if len(points) >= 10:  # a centred moving average makes noisy RL curves readable
                half = max(1, len(points) // 40)
                values = [p[1] for p in points]
                windows = [values[max(0, i - half) : i + half + 1] for i in range(len(values))]
                axis.plot([p[0] for p in points], [sum(w) / len(w) for w in windows], linewidth=2)
            axis.set_title(key, fontsize=9)
            axis.set_xlabel("step", fontsize=8)
            axis.tick_params(labelsize=7)
        for axis in list(axes.flat)[len(keys) :]:
            axis.axis("off")
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        path = Path(path) if path else self.directory / "curves.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


def row_without_step(row: dict[str, Any]) -> dict[str, float]:
    return {key: value for key, value in row.items() if key != "step"}

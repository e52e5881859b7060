"""Where people look besides JSONL, PNG curves and TensorBoard: `log.to` names trackers.

- `wandb`: a W&B run (online, or offline with `WANDB_MODE=offline`: a run folder under the
  run's output that `wandb sync` uploads later);
- `mlflow`: an MLflow run at `log.mlflow_uri` (any tracking URI; by default a local
  `file:` store in the run's folder, `mlruns/`).

Each gets the run's config as parameters, every step's metrics, every restart as an event,
and at the end the summary, the curves and the evaluation's report as artifacts. A tracker
that is not installed, or cannot be reached, is an error when the run starts (naming the
extra to install); once it runs, a tracker that fails is logged and left behind, never a
crash in the middle of a long run. A step redone after a restart was logged already with
the same values (the run is deterministic): a tracker gets each step once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

TRACKERS = ("wandb", "mlflow")
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}


class TrackerError(RuntimeError):
    """A tracker that cannot start: not installed, or not reachable."""


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def event(self, step: int, kind: str, fields: dict[str, Any]) -> None: ...
    def artifacts(self, paths: Iterable[Path]) -> None: ...
    def finish(self, failed: bool = False) -> None: ...


def _require(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise TrackerError(
            f"log.to names {name}, which is not installed: pip install -e '.[{EXTRAS[name]}]' (or pip install {name})"
        ) from error


class WandbTracker:
    def __init__(self, project: str, name: str, out: Path, config: dict[str, Any]) -> None:
        wandb = _require("wandb")
        try:
            self.run = wandb.init(
                project=project,
                name=name,
                dir=str(out),
                config=config,
                reinit="create_new",
                settings=wandb.Settings(init_timeout=60),
            )
            self.events: list[dict[str, Any]] = []
        except Exception as error:  # wandb raises its own kinds: a missing key, a timeout, a refusal
            raise TrackerError(
                f"log.to names wandb, which could not start a run ({error}); log in (`wandb login`), or set "
                "WANDB_MODE=offline to write the run for `wandb sync` later"
            ) from error

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def event(self, step: int, kind: str, fields: dict[str, Any]) -> None:
        # In the summary, not the history: a restart's step may be one W&B has passed.
        self.events.append({"event": kind, "step": step, **{k: str(v) for k, v in fields.items()}})
        self.run.summary["events"] = self.events

    def artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MlflowTracker:
    def __init__(self, uri: str, experiment: str, name: str, config: dict[str, Any]) -> None:
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store only on request; it is the local default we promise.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow = _require("mlflow")
        self.client = mlflow.tracking.MlflowClient(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        except Exception as error:
            raise TrackerError(f"log.to names mlflow, which cannot reach {uri} (log.mlflow_uri): {error}") from error
        params = [mlflow.entities.Param(key, str(value)[:500]) for key, value in config.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self._mlflow = mlflow

    def log(self, step: int, metrics: dict[str, float]) -> None:
        import time

        now = int(time.time() * 1000)
        entries = [self._mlflow.entities.Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=entries)

    def event(self, step: int, kind: str, fields: dict[str, Any]) -> None:
        text = ", ".join(f"{key}: {value}" for key, value in fields.items())
        self.client.set_tag(self.run_id, f"event.step_{step:06d}.{kind}", text[:5000])

    def artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(self.run_id, str(path))

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """The trackers `log.to` names, fed as one: each step once, failures logged, not raised."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self.trackers = trackers
        self.last_step = 0

    @classmethod
    def open(
        cls, names: Iterable[str], out: Path, config: dict[str, Any], project: str, mlflow_uri: str | None
    ) -> Trackers:
        """Start every named tracker now (a `TrackerError` if one cannot)."""
        trackers: dict[str, Tracker] = {}
        name = out.name if out.name not in ("", ".") else "run"
        try:
            for tracker in names:
                if tracker == "wandb":
                    trackers[tracker] = WandbTracker(project, name, out, config)
                elif tracker == "mlflow":
                    uri = mlflow_uri or (out / "mlruns").resolve().as_uri()
                    trackers[tracker] = MlflowTracker(uri, project, name, config)
                else:
                    raise TrackerError(f"log.to: unknown tracker {tracker!r}; choose from {', '.join(TRACKERS)}")
        except BaseException:
            cls(trackers).finish()
            raise
        return cls(trackers)

    def _each(self, what: str, call) -> None:
        for name in list(self.trackers):
            try:
                call(self.trackers[name])
            except Exception as error:  # a tracker never ends a long run: it is left behind, said once
                logger.warning("%s failed to %s (%s): no more logging to it in this run", name, what, error)
                del self.trackers[name]

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if step <= self.last_step:
            return  # redone after a restart: logged already, with the same values
        self.last_step = step
        self._each("log a step", lambda tracker: tracker.log(step, metrics))

    def event(self, step: int, kind: str, fields: dict[str, Any]) -> None:
        self._each("log an event", lambda tracker: tracker.event(step, kind, fields))

    def artifacts(self, paths: Iterable[Path]) -> None:
        existing = [Path(p) for p in paths if Path(p).exists()]
        self._each("upload artifacts", lambda tracker: tracker.artifacts(existing))

    def finish(self, failed: bool = False) -> None:
        self._each("finish", lambda tracker: tracker.finish(failed))
        self.trackers = {}  # finished once

"""The skeleton every local run shares (PA-SFT and SC-GRPO): its folder, config and
scorer, resuming only its own checkpoints, per-step logs and progress, atomic
checkpoints and `final/`, curves, the evaluation with the run's scorer, `summary.json`.

    run = Run(plan.run, config, resume, progress)
    for step in run.steps():
        metrics = …one step…
        run.record(step + 1, metrics, postfix)
        run.maybe_checkpoint(step + 1, save_checkpoint)
    run.save_final(save_model)
    summary = run.finish(curves, title, extra, run_eval)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...data.records import write_json
from ...train.checkpoint import check_same_run, latest_checkpoint, publish, publish_folder, staging_dir, step_dir
from ...train.config import RecipeConfig, config_keys, save_config
from ...train.run_log import RunLogger
from ...train.trackers import Trackers
from ..evaluation import SCORER_FILE, evaluate, run_scorer
from .evaluation_actor import ActorGenerator
from .plan import RunPlan

logger = logging.getLogger(__name__)

SaveFn = Callable[[str], Any]


class Run:
    """One stage's run in its output folder."""

    def __init__(self, plan: RunPlan, config: RecipeConfig, resume: bool, progress: bool) -> None:
        self.plan = plan
        self.out = plan.out
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(config, self.out / "config.yaml")
        self.scorer = run_scorer(config, self.out)
        # Started now: a tracker that cannot start stops the run before anything trains.
        params = {key: config.plain(key) for key in config_keys()}
        self.trackers = Trackers.open(plan.trackers, self.out, params, plan.tracker_project, plan.mlflow_uri)
        self._continue_from(latest_checkpoint(self.out) if resume else None)
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=plan.steps, initial=self.start_step, desc=plan.stage, unit="step")
        self.started = time.perf_counter()
        self.final = self.out / "final"

    def _continue_from(self, checkpoint: Path | None) -> None:
        """Start at `checkpoint` (refused if another run wrote it), or at step 0; the log
        keeps the steps up to it."""
        self.checkpoint, self.start_step = checkpoint, 0
        if checkpoint is not None:
            self.start_step = check_same_run(checkpoint, self.plan.stage, self.plan.seed, self.plan.identity)["step"]
            logger.info("resuming %s from %s (step %d)", self.plan.stage, checkpoint, self.start_step)
        self.log = RunLogger(self.out, resume_step=self.start_step, trackers=self.trackers)

    def steps(self) -> range:
        return range(self.start_step, self.plan.steps)

    def restart(self) -> int:
        """Go on from the latest complete checkpoint (the start if there is none) as
        `--resume` would, in this command: the log keeps the steps up to it (the later ones
        are redone, so that none appears twice). The step it goes on from."""
        self.log.close()
        self._continue_from(latest_checkpoint(self.out))
        if self.bar is not None:
            self.bar.n = self.start_step
            self.bar.refresh()
        return self.start_step

    def event(self, step: int, kind: str, **fields: Any) -> None:
        """A restart (or another event) in `events.jsonl` and TensorBoard, and on the console."""
        self.log.event(step, kind, **fields)
        message = f"{kind} at step {step}: " + ", ".join(f"{key} {value}" for key, value in fields.items())
        if self.bar is not None:
            self.bar.write(message)
        logger.warning("%s", message)

    def record(self, step: int, metrics: dict[str, float], postfix: dict[str, str] | None = None) -> None:
        self.log.log(step, metrics)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(postfix or {})

    def maybe_checkpoint(self, step: int, save: SaveFn) -> None:
        """Every `checkpoint.every` steps (not the last: `final/` follows), a checkpoint:
        `save(folder)` writes the policy's files, then it is published with the run's identity."""
        if step % self.plan.checkpoint_every or step >= self.plan.steps:
            return
        staging = staging_dir(step_dir(self.out, step).parent, f"step_{step:06d}")
        save(str(staging))
        state = {"stage": self.plan.stage, "seed": self.plan.seed, "identity": self.plan.identity}
        publish(self.out, staging, step, state, self.plan.checkpoint_keep)

    def save_final(self, save: SaveFn) -> Path:
        """The final HF folder, written aside and published whole."""
        if self.bar is not None:
            self.bar.close()
        staging = staging_dir(self.out, "final")
        save(str(staging))
        return publish_folder(staging, self.final)

    def evaluate(self, progress: bool) -> dict:
        """The evaluation of `final/`, generated in an actor where the training ran (the
        training actors are released by now), scored here with the run's scorer."""
        generator = ActorGenerator(self.plan.eval, self.final)
        try:
            report = evaluate(self.plan.eval, self.final, self.out / "eval", self.scorer, progress, generator)
        finally:
            generator.close()
        return {**report, "generated_with": generator.where}

    def finish(self, curves: list[str], title: str, extra: dict[str, Any], run_eval: bool, progress: bool) -> dict:
        """Curves, the evaluation of `final/` with the run's scorer, and `summary.json`
        (Ray is still up: the evaluation generates in an actor)."""
        self.log.plot(curves, self.out / "curves.png", title=title)
        self.log.close()
        summary = {
            "steps": self.plan.steps,
            "final_model": str(self.final),
            "train_seconds": time.perf_counter() - self.started,
            **extra,
            "scorer": {**self.scorer.describe(), "config": str(self.out / SCORER_FILE)},
        }
        if run_eval and self.plan.eval is not None:
            summary["eval"] = self.evaluate(progress)
        write_json(summary, self.out / "summary.json")
        self.trackers.artifacts([self.out / "summary.json", self.out / "curves.png", self.out / "eval"])
        self.trackers.finish()
        return summary

    def abandon(self) -> None:
        """A run that ended in an error or a stop: its trackers' runs are closed as failed."""
        self.log.close()
        self.trackers.finish(failed=True)

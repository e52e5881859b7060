"""Shared pieces of the local backend: paths and inputs checked up front, actor
construction, evaluation of a finished model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewards import Scorer

from ..data.records import Record, load_records, write_json
from ..eval.generate import load_test_set, run_generation
from ..eval.metrics import evaluation_report
from ..eval.report import format_table, write_report
from ..models.generation import SamplingConfig
from ..models.loading import check_model_dir
from ..train.config import ActorResources, RecipeConfig

logger = logging.getLogger(__name__)


def resources(r: ActorResources) -> dict[str, float]:
    return {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus}


def training_records(path: str, need_response: bool) -> list[Record]:
    """The training records, with a clear error for a missing file or missing targets."""
    if not path:
        raise ValueError("data.train is not set in the config")
    if not Path(path).is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    records = load_records(path)
    if need_response:
        missing = [r.id for r in records if not r.response]
        if missing:
            raise ValueError(f"PA-SFT needs a 'response' on every record; {len(missing)} lack one (e.g. {missing[0]})")
    if not records:
        raise ValueError(f"no records in {path}")
    return records


def actor_kwargs(config: RecipeConfig, model_path: str) -> dict[str, Any]:
    check_model_dir(model_path)
    return {
        "model_path": str(model_path),
        "dtype": config.model.dtype,
        "family": config.data.prompt,
        "torch_threads": config.resources.torch_threads,
        "max_pixels": config.model.max_pixels,
    }


SCORER_FILE = "scorer.json"


def run_scorer(config: RecipeConfig, out: Path) -> Scorer:
    """The run's scorer (`grpo.scorer`), its resolved configuration saved as
    `<out>/scorer.json`: training, the run's evaluation and `iadr1-eval --scorer` then
    all score with the same reward."""
    scorer = Scorer.from_config(config.grpo.scorer)
    write_json(scorer.to_config(), out / SCORER_FILE)
    return scorer


def evaluate(
    config: RecipeConfig, model_dir: str | Path, out_dir: str | Path, scorer: Scorer, progress: bool = True
) -> dict | None:
    """Balanced accuracy and the run's reward of `model_dir` on `data.eval` (predictions,
    JSON, CSV, PNG in out_dir)."""
    if not config.data.eval:
        return None
    out_dir = Path(out_dir)
    records = load_test_set(config.data.eval, config.data.shots)
    sampling = SamplingConfig(max_new_tokens=config.eval.max_new_tokens)
    predictions = out_dir / "predictions.jsonl"
    if predictions.exists():
        predictions.unlink()  # a new model: never resume another model's predictions
    run_generation(
        model_dir,
        records,
        predictions,
        config.data.eval_prompt,
        config.eval.batch_size,
        sampling,
        config.model.dtype,
        progress=progress,
    )
    report = evaluation_report(predictions, "tags", scorer)
    write_report(report, out_dir / "eval.json", config.backbone, config.data.shots)
    logger.info("evaluation of %s:\n%s", model_dir, format_table(report))
    return report


def maybe_checkpoint(
    save: Callable[[str], Any], out: Path, step: int, total: int, config: RecipeConfig, stage: str
) -> None:
    """Every `checkpoint.every` steps (not the last: `final/` follows), an atomic
    checkpoint: `save(folder)` writes the policy's files, then it is published."""
    from ..train.checkpoint import publish, staging_dir

    if step % config.checkpoint.every or step >= total:
        return
    staging = staging_dir(out, step)
    save(str(staging))
    publish(out, staging, step, {"seed": config.seed, "stage": stage}, config.checkpoint.keep)


def finish(
    config: RecipeConfig,
    final: Path,
    out: Path,
    summary: dict[str, Any],
    scorer: Scorer,
    run_eval: bool,
    progress: bool,
) -> dict[str, Any]:
    """Evaluate the final model with the run's scorer (unless told not to) and write `summary.json`."""
    summary["scorer"] = {**scorer.describe(), "config": str(out / SCORER_FILE)}
    if run_eval:
        report = evaluate(config, final, out / "eval", scorer, progress)
        if report is not None:
            summary["eval"] = report
    write_json(summary, out / "summary.json")
    return summary

"""What both backends share about the reward after training: the run's scorer, saved beside
the run, and the evaluation of a finished model with it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from rewards import Scorer

from ..data.records import write_json
from ..eval.generate import Generate, load_test_set, run_generation
from ..eval.html_report import write_html_report
from ..eval.metrics import evaluation_report
from ..eval.report import format_table, write_report
from ..models.generation import SamplingConfig
from ..train.config import RecipeConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPlan:
    """The evaluation of the final model (`iadr1-eval run` + `score`, with the run's scorer),
    its generation where the training ran: `engine` ("hf" or "vllm", with `engine_options`)
    in an actor with `resources`."""

    records: str
    prompt: str
    shots: int
    batch_size: int
    max_new_tokens: int
    dtype: str
    backbone: str | None
    engine: str = "hf"
    engine_options: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    torch_threads: int = 0

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_new_tokens)  # greedy


SCORER_FILE = "scorer.json"
REPORT_FILE = "report.html"


def run_scorer(config: RecipeConfig, out: Path) -> Scorer:
    """The run's scorer (`grpo.scorer`), its resolved configuration saved as
    `<out>/scorer.json`: training, the run's evaluation and `iadr1-eval --scorer` then
    all score with the same reward."""
    try:
        scorer = Scorer.from_config(config.grpo.scorer)
    except ValueError as error:
        raise ValueError(f"grpo.scorer: {error}") from error
    write_json(scorer.to_config(), out / SCORER_FILE)
    return scorer


def evaluate(
    plan: EvalPlan,
    model_dir: str | Path,
    out_dir: str | Path,
    scorer: Scorer,
    progress: bool = True,
    generate: Generate | None = None,
) -> dict:
    """Balanced accuracy and the run's reward of `model_dir` on the evaluation records
    (predictions, JSON, CSV, PNG and the visual report.html in out_dir); `generate` (records
    to completions) where it should run, else HF on this process's CPU."""
    out_dir = Path(out_dir)
    records = load_test_set(plan.records, plan.shots)
    predictions = out_dir / "predictions.jsonl"
    if predictions.exists():
        predictions.unlink()  # a new model: never resume another model's predictions
    run_generation(
        model_dir,
        records,
        predictions,
        plan.prompt,
        plan.batch_size,
        plan.sampling,
        plan.dtype,
        progress=progress,
        generate=generate,
    )
    report = evaluation_report(predictions, "tags", scorer)
    write_report(report, out_dir / "eval.json", plan.backbone, plan.shots)
    write_html_report(predictions, records, out_dir / REPORT_FILE, scorer)
    logger.info("evaluation of %s:\n%s", model_dir, format_table(report))
    return report

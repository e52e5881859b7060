"""`iadr1-eval`: generate over a test set, and score predictions.

iadr1-eval run --model DIR --data FILE|MMAD.json --shots 0|1 --out preds.jsonl
iadr1-eval score preds.jsonl [--format tags|plain] --json OUT.json
iadr1-eval compare before.jsonl after.jsonl [--json OUT.json]
iadr1-eval report preds.jsonl --data FILE --out report.html [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_errors import run_command
from ..models.generation import SamplingConfig
from .answers import FORMATS
from .compare import changes_json, paired_changes
from .generate import load_test_set, run_generation
from .metrics import evaluation_report
from .paper import IAD_R1
from .report import format_table, write_report


def cmd_run(args: argparse.Namespace) -> int:
    records = load_test_set(args.data, args.shots, args.image_root)
    if args.limit:
        records = records[: args.limit]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    made = run_generation(
        args.model,
        records,
        args.out,
        args.prompt,
        args.batch_size,
        sampling,
        args.dtype,
        args.device,
        args.backend,
        progress=not args.quiet,
    )
    print(f"generated {made} outputs ({len(records) - made} already done) in {args.out}")
    return 0


def load_scorer(path: Path | None):
    """The scorer of `--scorer PATH` (a run's `scorer.json`, or any scorer config), else the contract's."""
    from rewards import Scorer

    return Scorer.from_config(path)


def cmd_score(args: argparse.Namespace) -> int:
    report = evaluation_report(args.predictions, args.format, load_scorer(args.scorer))
    print(format_table(report))
    hint = format_hint(report, args.format)
    if hint:
        print(hint, file=sys.stderr)
    if args.json:
        paths = write_report(report, args.json, args.backbone, args.shots)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def format_hint(report: dict, fmt: str) -> str | None:
    """A hint when most outputs have no answer in the format asked for: the usual cause
    is a base model's plain answers scored as IAD-R1 tags."""
    datasets = report["datasets"].values()
    total, unparsed = sum(d["n"] for d in datasets), sum(d["unparsed"] for d in datasets)
    if not total or unparsed / total <= 0.5:
        return None
    other = "plain" if fmt == "tags" else "tags"
    meaning = "yes/no or an option letter, as base models answer" if other == "plain" else "<answer> tags"
    return (
        f"hint: {unparsed} of {total} outputs have no answer in the {fmt!r} format; "
        f"if they answer with {meaning}, score them with --format {other}"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    scorer = load_scorer(args.scorer)
    changes = paired_changes(args.before, args.after, scorer)
    print(f"scored by the {scorer.preset} preset, scorer {scorer.digest}")
    for change in changes.values():
        print(change.describe() if change.n == 0 else f"{change.describe()}: {change.verdict()}")
    if args.json:
        from ..data.records import write_json

        write_json({**changes_json(changes), "scorer": scorer.describe()}, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .html_report import write_html_report

    scorer = load_scorer(args.scorer)
    path = write_html_report(args.predictions, args.data, args.out, scorer, args.limit, args.seed, args.image_root)
    print(f"wrote {path}")
    return 0


SCORER_HELP = "scorer config: a run's scorer.json or any JSON/YAML scorer config (default: the contract's)"


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="iadr1-eval", description="Evaluate IAD-R1 models.", formatter_class=formatter
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate answers for a test set (resumable)", formatter_class=formatter)
    run.add_argument("--model", required=True, type=Path, help="HF model folder")
    run.add_argument("--data", required=True, type=Path, help="records JSONL or MMAD question JSON")
    run.add_argument("--shots", type=int, choices=(0, 1), default=0, help="1: show a normal reference image too")
    run.add_argument(
        "--out", required=True, type=Path, help="predictions JSONL; items already in it are skipped (resume)"
    )
    run.add_argument("--prompt", default="iad_r1", help="prompt family: iad_r1, base, train, base_initial_policy")
    run.add_argument("--image-root", type=Path, help="where MMAD image paths start")
    run.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    run.add_argument("--max-new-tokens", type=int, default=512, help="longest answer generated")
    run.add_argument("--dtype", default="float32", help="model dtype: float32, bfloat16, float16")
    run.add_argument("--device", default="cpu", help="torch device of either backend: cpu, cuda, cuda:1, …")
    run.add_argument(
        "--backend",
        choices=("hf", "vllm"),
        default="hf",
        help="hf: transformers generate; vllm: the rollout workers' vLLM engine (make install-vllm; .venv-vllm)",
    )
    run.add_argument("--limit", type=int, help="only the first N samples")
    run.set_defaults(func=cmd_run)
    score = sub.add_parser("score", help="balanced accuracy per dataset", formatter_class=formatter)
    score.add_argument("predictions", help="predictions JSONL from iadr1-eval run (- for stdin)")
    score.add_argument("--format", choices=FORMATS, default="tags", help="tags: IAD-R1 models; plain: base models")
    score.add_argument("--json", type=Path, help="write JSON here, with CSV and PNG beside it")
    score.add_argument("--backbone", choices=sorted(IAD_R1), help="draw the paper's figures for this backbone")
    score.add_argument(
        "--shots", type=int, choices=(0, 1), default=0, help="which of the paper's columns to compare with"
    )
    score.add_argument("--scorer", type=Path, help=SCORER_HELP)
    score.set_defaults(func=cmd_score)
    compare = sub.add_parser(
        "compare",
        help="paired change of each metric between two models' predictions on one test set",
        formatter_class=formatter,
    )
    compare.add_argument("before", type=Path, help="predictions JSONL of the first model (e.g. PA-SFT)")
    compare.add_argument("after", type=Path, help="predictions JSONL of the second model, same test items")
    compare.add_argument("--json", type=Path, help="write the changes here")
    compare.add_argument("--scorer", type=Path, help=SCORER_HELP)
    compare.set_defaults(func=cmd_compare)
    report = sub.add_parser(
        "report",
        help="a self-contained HTML page: each item's image, grid, cells, completion and reward",
        formatter_class=formatter,
    )
    report.add_argument("predictions", help="predictions JSONL from iadr1-eval run (- for stdin)")
    report.add_argument(
        "--data", required=True, type=Path, help="the records (JSONL) or MMAD JSON the predictions came from"
    )
    report.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    report.add_argument(
        "--limit", type=int, help="show at most N items, sampled so that every outcome is represented (default: all)"
    )
    report.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    report.add_argument("--image-root", type=Path, help="where MMAD image paths start (as for run)")
    report.add_argument("--scorer", type=Path, help=SCORER_HELP)
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

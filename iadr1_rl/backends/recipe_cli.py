"""The command line both recipes share: `--config FILE [key=value …] [--resume]`, and how a
local run ends: a result, a one-line error, or a clean stop (`signals.py`): its actors
killed, the Ray it started shut down, exit 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..train.config import RecipeConfig, load_config, resolve_paths
from .signals import Stopped, stop_on_signals


def recipe_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (recipes/configs/*.yaml); without it, the defaults")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. grpo.lr=1e-6 (values read as YAML)")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("IADR1_ROOT", ".")),
        help="relative paths in the config start here ($IADR1_ROOT or the current folder)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from this run's latest checkpoint")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the run would do (local: each actor's memory plan; openrlhf: the command) and start nothing",
    )
    return parser


def parse_recipe_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, RecipeConfig]:
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = resolve_paths(load_config(args.config, args.overrides), args.root)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    return args, config


def run_recipe(function: Callable[..., dict], args: argparse.Namespace, config: RecipeConfig, stage: str) -> int:
    """Run a training function: its summary, a clear one-line error (exit 2) for bad
    inputs, or a clean stop on a signal (exit 128 + signal). With `--dry-run`, the memory
    plan of `stage` and nothing else."""
    if args.dry_run:
        from ..memory.plan import dry_run
        from .keys import check_keys

        try:
            check_keys(config, "local", stage)  # what the run would refuse, and the keys it would not apply
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return dry_run(config, stage)
    stop_on_signals()
    try:
        summary = function(config, resume=args.resume, progress=not args.no_progress, run_eval=not args.no_eval)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Stopped as stop:
        print(f"{stop}: stopped cleanly; --resume continues from the last checkpoint", file=sys.stderr)
        return 128 + stop.signum
    finally:
        shutdown_ray()
    print(json.dumps({k: v for k, v in summary.items() if k != "eval"}, indent=2))
    return 0


def shutdown_ray() -> None:
    """Disconnect, stopping the local Ray this process started (and its workers)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()

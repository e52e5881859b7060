"""The command line both recipes share: `--config FILE [key=value …] [--resume]`, and how a
recipe ends: a result, a one-line error, or a clean stop.

SIGTERM (`timeout`, a scheduler, `kill`, `ray job stop`) and SIGINT stop a recipe the way
an error does: its actors are killed, the Ray it started is shut down with its
processes, and it exits with 128 + the signal's number. Nothing is left running, and the
last checkpoint is there for `--resume`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..train.config import RecipeConfig, load_config, resolve_paths


class Stopped(BaseException):
    """A stop signal arrived: unwinds like KeyboardInterrupt, through every `finally`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    for other in (signal.SIGTERM, signal.SIGINT):  # the cleanup that follows is not interrupted
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGINT into `Stopped` in this (main) thread."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_stopped)


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


def run_recipe(function: Callable[..., dict], args: argparse.Namespace, config: RecipeConfig) -> int:
    """Run a training function: its summary, a clear one-line error (exit 2) for bad
    inputs, or a clean stop on a signal (exit 128 + signal)."""
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

"""The command line both recipes share: `--config FILE [key=value …] [--resume]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..train.config import RecipeConfig, load_config, resolve_paths


def recipe_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="YAML config (recipes/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. grpo.lr=1e-6")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("IADR1_ROOT", ".")),
        help="relative paths in the config start here (default: $IADR1_ROOT or .)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    parser.add_argument("--no-progress", action="store_true")
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


def run_recipe(function, args: argparse.Namespace, config: RecipeConfig) -> int:
    """Run a training function; a clear one-line error (not a traceback) for bad inputs."""
    try:
        summary = function(config, resume=args.resume, progress=not args.no_progress, run_eval=not args.no_eval)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import json

    print(json.dumps({k: v for k, v in summary.items() if k != "eval"}, indent=2))
    return 0

"""How our command lines end: a clear one-line error and exit 2 for bad input."""

from __future__ import annotations

import argparse
import logging
import sys


def run_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError),
) -> int:
    """Parse, run `args.func(args)`, and turn expected errors into `error: …` and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""`iadr1-score INPUT.jsonl [-o OUT.jsonl]`: score completions offline (`-`: stdin, stdout).

Each input line is `{"completion": …, "label": …}` (a completion as text or chat messages,
a label as a dict, JSON text or solution string); each output line is the input with
`"reward": {…every part…}` added. Prints the mean of every part and the answer
confusion table. A malformed line is reported with its line number and skipped, or
stops the run with `--strict`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

from .files import atomic_open, is_stdio, open_input
from .scorer import PARTS, Scorer


def _progress(lines: Iterable[str], enabled: bool) -> Iterable[str]:
    if not enabled:
        return lines
    try:
        from tqdm import tqdm
    except ImportError:  # the core install has no tqdm: no bar
        return lines
    return tqdm(lines, desc="scoring", unit="line", file=sys.stderr, mininterval=0.5)


def _parse_line(number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"line {number}: invalid JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object")
    for key in ("completion", "label"):
        if key not in record:
            raise ValueError(f"line {number}: missing {key!r}")
    return record


def format_summary(totals: dict[str, float], count: int, confusion: Counter, skipped: int) -> str:
    lines = [f"scored {count} completions" + (f", skipped {skipped} malformed lines" if skipped else "")]
    if count:
        lines.append("mean " + "  ".join(f"{part}={totals[part] / count:.4f}" for part in (*PARTS, "total")))
        lines.append("")
        lines.append("label \\ answer     yes      no    none")
        for gold in ("yes", "no"):
            cells = "".join(f"{confusion[(gold, pred)]:>8}" for pred in ("yes", "no", None))
            lines.append(f"{gold:<14}{cells}")
    return "\n".join(lines)


class Malformed(ValueError):
    """A malformed line under --strict: the run stops and writes nothing."""


def run(lines: Iterable[str], output: TextIO | None, scorer: Scorer, strict: bool, progress: bool) -> str:
    """Score every line, write the scored lines to `output`; the summary."""
    totals = dict.fromkeys((*PARTS, "total"), 0.0)
    confusion: Counter = Counter()
    count = skipped = 0
    for number, line in enumerate(_progress(lines, progress), start=1):  # streamed, never read whole
        if not line.strip():
            continue
        try:
            record = _parse_line(number, line)
            try:
                label = scorer.parse_label(record["label"])
                result = scorer.score(record["completion"], label)
            except (ValueError, TypeError) as error:  # a bad label, or a completion that is not text
                raise ValueError(f"line {number}: {error}") from error
        except ValueError as error:
            if strict:
                raise Malformed(str(error)) from error
            print(f"skipped {error}", file=sys.stderr)
            skipped += 1
            continue
        count += 1
        for part in totals:
            totals[part] += getattr(result, part)
        confusion[(label.answer, result.answer)] += 1
        if output is not None:
            record["reward"] = result.as_dict()
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
    return format_summary(totals, count, confusion, skipped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iadr1-score", description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("input", help="JSONL file of {completion, label} lines; - reads stdin")
    parser.add_argument(
        "-o", "--output", help="write the scored lines here (JSONL; - for stdout, the summary then goes to stderr)"
    )
    parser.add_argument("--config", help="scorer config (JSON/YAML: grid, weights, vocabulary; default: the contract)")
    parser.add_argument("--strict", action="store_true", help="fail on the first malformed line and write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scorer = Scorer.from_config(args.config)
    except (ValueError, TypeError) as error:
        parser.error(f"--config: {error}")
    progress = not args.no_progress and not is_stdio(args.input)
    summary_to = sys.stderr if is_stdio(args.output) else sys.stdout
    try:
        with open_input(args.input, errors="surrogateescape") as lines:
            if args.output is None:
                summary = run(lines, None, scorer, args.strict, progress)
            else:
                # Written beside the target and renamed: a failed run never leaves half a file.
                with atomic_open(args.output, errors="surrogateescape") as out:
                    summary = run(lines, out, scorer, args.strict, progress)
    except FileNotFoundError as error:
        parser.error(str(error))
    except Malformed as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary, file=summary_to)
    return 0


if __name__ == "__main__":
    sys.exit(main())

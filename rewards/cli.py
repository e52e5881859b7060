"""`iadr1-score INPUT.jsonl [-o OUT.jsonl]`: score completions offline.

Each input line is `{"completion": …, "label": …}` (a completion as text or chat messages,
a label as a dict, JSON text or solution string); each output line is the input with
`"reward": {…every part…}` added. Prints the mean of every part and the answer
confusion table. A malformed line is reported with its line number and skipped, or
stops the run with `--strict`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

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


def run(input_path: Path, output: TextIO | None, scorer: Scorer, strict: bool, progress: bool) -> int:
    totals = dict.fromkeys((*PARTS, "total"), 0.0)
    confusion: Counter = Counter()
    count = skipped = 0
    with input_path.open(encoding="utf-8", errors="surrogateescape") as handle:  # streamed, never read whole
        for number, line in enumerate(_progress(handle, progress), start=1):
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
                    print(f"error: {error}", file=sys.stderr)
                    return 2
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
    print(format_summary(totals, count, confusion, skipped))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iadr1-score", description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="JSONL file of {completion, label} lines")
    parser.add_argument("-o", "--output", type=Path, help="write the scored lines here (JSONL)")
    parser.add_argument("--config", help="scorer config (JSON/YAML: grid, weights, vocabulary)")
    parser.add_argument("--strict", action="store_true", help="fail on the first malformed line")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        parser.error(f"input file not found: {args.input}")
    try:
        scorer = Scorer.from_config(args.config)
    except (ValueError, TypeError) as error:
        parser.error(f"--config: {error}")
    if args.output is None:
        return run(args.input, None, scorer, args.strict, not args.no_progress)
    # Write beside the target and rename: a failed run never leaves half a file. os.open
    # with 0o666 lets the umask decide the permissions (mkstemp would make them 0600).
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temp = str(args.output.parent / f".{args.output.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
            code = run(args.input, out, scorer, args.strict, not args.no_progress)
        if code == 0:
            os.replace(temp, args.output)
        return code
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


if __name__ == "__main__":
    sys.exit(main())

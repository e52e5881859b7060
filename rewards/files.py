"""Files every command line reads and writes: `-` for stdin or stdout, and outputs that
appear only once whole.

    >>> is_stdio("-"), is_stdio("preds.jsonl")
    (True, False)
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

STDIO = "-"


def is_stdio(path: str | Path | None) -> bool:
    return path is not None and str(path) == STDIO


def folder_of(path: str | Path) -> Path:
    """Where the relative paths inside a file start: its folder, or the current one for `-`."""
    return Path.cwd() if is_stdio(path) else Path(path).resolve().parent


@contextmanager
def open_input(path: str | Path, what: str = "input file", hint: str = "", errors: str = "strict") -> Iterator[TextIO]:
    """A text file to read, or stdin for `-`; FileNotFoundError naming `what` (and how to
    make one: `hint`) when there is none."""
    if is_stdio(path):
        yield sys.stdin
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (f"; {hint}" if hint else ""))
    with path.open(encoding="utf-8", errors=errors) as handle:
        yield handle


def fsync_path(path: str | Path) -> None:
    """Flush a file or a folder's entries to disk (a rename is durable once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path, errors: str = "strict") -> Iterator[TextIO]:
    """A text file that appears at `path` only once fully written and on disk (temporary
    file, fsync, rename), with the permissions the umask gives any new file; nothing
    appears when the block raises. `-` writes to stdout."""
    if is_stdio(path):
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with mode 0o666 lets the umask decide, unlike mkstemp's fixed 0600.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        fsync_path(path.parent)
    finally:
        if temp.exists():
            temp.unlink()

"""How a recipe (on either backend) or `make demo` stops on a signal.

SIGTERM (`timeout`, a scheduler, `kill`, `ray job stop`) and SIGINT stop a run the way an
error does: `Stopped` unwinds through every `finally` (actors killed, Ray shut down, a
child process terminated), and the recipe exits with 128 + the signal's number. Nothing is
left running, and the last checkpoint is there for `--resume`.
"""

from __future__ import annotations

import signal


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

"""The server's Prometheus metrics, through `prometheus_client`.

With `--workers N` every worker is a process of its own: the command line points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before any worker starts, each worker writes
its values there, and `/metrics`, whichever worker answers it, adds them all up. Without
that variable (a single process, Ray Serve replicas, tests) the process's own registry is
used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "iadr1_reward_requests", "Requests by endpoint and HTTP status (499: the client went away).", ["endpoint", "status"]
)
LATENCY = Histogram(
    "iadr1_reward_request_seconds", "Request latency in seconds.", ["endpoint"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("iadr1_reward_requests_in_flight", "Requests being handled.", multiprocess_mode="livesum")
COMPLETIONS = Counter("iadr1_reward_completions_scored", "Completions scored.")
ERRORS = Counter("iadr1_reward_errors", "Rejected or failed requests by kind.", ["kind"])
TIMEOUTS = Counter("iadr1_reward_connection_timeouts", "Connections closed for a slow head or body.", ["phase"])

_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


def render() -> tuple[bytes, str]:
    """The exposition text of every worker's metrics, and its content type."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_workers(Path(directory))
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(directory: Path) -> None:
    """A worker killed mid-request leaves its in-flight gauge behind; drop the gauges of
    processes that no longer exist (counters keep their counts, as they should)."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            _multiprocess.mark_process_dead(int(match.group(1)), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

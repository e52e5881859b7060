"""Counters and a latency histogram rendered in the Prometheus text format.

Small and dependency-free on purpose: the server needs four metrics, and each worker
process keeps its own (scrape each worker, or run one worker per replica).
"""

from __future__ import annotations

import threading
from collections import Counter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)
    return "{" + ",".join(escaped) + "}"


class RewardMetrics:
    """What the reward server counts: requests, completions, latency, errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (endpoint, status)
        self.errors: Counter = Counter()  # kind
        self.completions = 0
        self.bucket_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, str(status))] += 1
            self.latency_sum += seconds
            self.latency_count += 1
            for index, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[index] += 1

    def count_completions(self, n: int) -> None:
        with self._lock:
            self.completions += n

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP iadr1_reward_requests_total Requests by endpoint and HTTP status.",
                "# TYPE iadr1_reward_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f"iadr1_reward_requests_total{_labels((('endpoint', endpoint), ('status', status)))} {n}")
            lines += [
                "# HELP iadr1_reward_completions_scored_total Completions scored.",
                "# TYPE iadr1_reward_completions_scored_total counter",
                f"iadr1_reward_completions_scored_total {self.completions}",
                "# HELP iadr1_reward_errors_total Rejected or failed requests by kind.",
                "# TYPE iadr1_reward_errors_total counter",
            ]
            for kind, n in sorted(self.errors.items()):
                lines.append(f"iadr1_reward_errors_total{_labels((('kind', kind),))} {n}")
            lines += [
                "# HELP iadr1_reward_request_seconds Request latency in seconds.",
                "# TYPE iadr1_reward_request_seconds histogram",
            ]
            for bound, n in zip(LATENCY_BUCKETS, self.bucket_counts):
                lines.append(f'iadr1_reward_request_seconds_bucket{{le="{bound}"}} {n}')
            lines += [
                f'iadr1_reward_request_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                f"iadr1_reward_request_seconds_sum {self.latency_sum}",
                f"iadr1_reward_request_seconds_count {self.latency_count}",
            ]
        return "\n".join(lines) + "\n"

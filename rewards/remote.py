"""A reward server seen from a trainer: OpenRLHF's `/get_reward` call, with a token.

OpenRLHF's own remote reward client sends no headers, so it cannot reach a token-protected
server. The OpenRLHF reward file (`rewards/integrations/openrlhf.py`) forwards through this client
instead when `IADR1_REWARD_URL` is set. Every failure is an error naming the server and
what went wrong, after a few attempts: a training job never gets a silent default reward.
Standard library only.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENV_URL = "IADR1_REWARD_URL"
ENV_TOKEN = "IADR1_REWARD_TOKEN"
ENV_TOKEN_FILE = "IADR1_REWARD_TOKEN_FILE"
ENV_TIMEOUT = "IADR1_REWARD_TIMEOUT"
ENV_ATTEMPTS = "IADR1_REWARD_ATTEMPTS"
RETRYABLE = frozenset({502, 503, 504})  # a worker restarting, a proxy in between


class RemoteRewardError(RuntimeError):
    """The reward server did not answer, or answered with an error."""


@dataclass(frozen=True)
class RemoteScorer:
    """POSTs OpenRLHF batches to `url` (…/get_reward) with `Authorization: Bearer token`."""

    url: str
    token: str | None = None
    timeout: float = 60.0
    attempts: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RemoteScorer:
        token = environ.get(ENV_TOKEN) or None
        if environ.get(ENV_TOKEN_FILE):
            token = Path(environ[ENV_TOKEN_FILE]).read_text(encoding="utf-8").strip()
        return cls(
            url=environ[ENV_URL],
            token=token,
            timeout=float(environ.get(ENV_TIMEOUT, 60)),
            attempts=max(1, int(environ.get(ENV_ATTEMPTS, 3))),
        )

    def _request(self, path: str, body: dict | None = None) -> Any:
        url = self.url if path == "" else self.url.rsplit("/", 1)[0] + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
        problem = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.load(reply)
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}: {_error_text(error)}"
                if error.code not in RETRYABLE:
                    break
            except (urllib.error.URLError, OSError, ValueError) as error:
                problem = str(getattr(error, "reason", error))
            if attempt < self.attempts:
                logger.warning("reward server %s: %s; retrying (%d/%d)", url, problem, attempt, self.attempts)
                time.sleep(2 ** (attempt - 1))
        raise RemoteRewardError(f"the reward server at {url} did not answer: {problem}")

    def check(self, digest: str) -> None:
        """Refuse a server that scores with another configuration than this run's."""
        served = self._request("/health").get("scorer") or {}
        if served.get("digest") != digest:
            raise RemoteRewardError(
                f"the reward server at {self.url} scores with scorer {served.get('digest')}, this run with {digest}: "
                "start the server with --config pointing at the run's scorer.json"
            )

    def score_queries(self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]) -> dict:
        """OpenRLHF's protocol, answered by the server."""
        return self._request("", {"query": list(queries), "prompts": list(prompts), "labels": list(labels)})


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        return error.reason

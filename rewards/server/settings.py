"""The reward server's settings: every limit a client could push against, its default,
and the environment variable that carries it to every worker process.

The command line (`cli.py`) writes these variables; uvicorn's workers, the protocol and
Ray Serve replicas read them back with `settings_from_env`, so each process enforces the
same limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

ENV_PREFIX = "IADR1_REWARD_"
ENV_CONFIG = "IADR1_SCORER_CONFIG"
ENV_TOKEN = "IADR1_REWARD_TOKEN"


@dataclass(frozen=True)
class ServerSettings:
    """Defaults suit a training cluster: OpenRLHF sends one sample (a few KB) per request."""

    config: str | None = None  # scorer config (JSON/YAML); None: the contract's defaults
    token: str | None = None  # bearer token every call but /health and /metrics must carry
    max_body_bytes: int = 8 * 1024 * 1024  # 413 beyond (before the body is read)
    max_items: int = 4096  # completions or queries per request; 413 beyond
    max_text_chars: int = 256 * 1024  # characters per completion, query, prompt or label text; 413 beyond
    max_header_bytes: int = 16 * 1024  # request line and headers; 431 beyond (h11's limit)
    header_timeout: float = 10.0  # seconds from connect (or a next request's first byte) to a whole head
    body_timeout: float = 30.0  # seconds from the head to the end of the body
    keep_alive_timeout: float = 5.0  # seconds an idle connection is kept after a response (uvicorn's)
    max_connections: int = 512  # open connections per worker; 503 beyond

    def to_env(self) -> dict[str, str]:
        """The variables that carry these settings to a worker (None values are left out)."""
        env = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                env[_env_name(item.name)] = str(value)
        return env


def _env_name(field: str) -> str:
    return {"config": ENV_CONFIG, "token": ENV_TOKEN}.get(field, ENV_PREFIX + field.upper())


def settings_from_env(environ: dict[str, str] | None = None) -> ServerSettings:
    """Settings from the environment (how uvicorn workers and Ray Serve replicas get them)."""
    environ = os.environ if environ is None else environ
    values = {}
    for item in fields(ServerSettings):
        raw = environ.get(_env_name(item.name))
        if raw in (None, ""):
            continue
        kind = type(item.default) if item.default is not None else str
        try:
            values[item.name] = kind(raw)
        except ValueError as error:
            raise ValueError(f"{_env_name(item.name)}={raw!r} is not a {kind.__name__}") from error
    return ServerSettings(**values)

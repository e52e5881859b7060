"""The reward server's settings: every limit a client could push against, its default,
and the environment variable that carries it to every worker process.

The command line (`cli.py`) writes these variables; uvicorn's workers, the protocol and
Ray Serve replicas read them back with `settings_from_env`, so each process enforces the
same limits.
"""

from __future__ import annotations

import os
from dataclasses import Field, dataclass, field, fields

from ..scorer import SCORER_CONFIG_ENV

ENV_PREFIX = "IADR1_REWARD_"
ENV_TOKEN = "IADR1_REWARD_TOKEN"


def _limit(default: int | float, help: str):
    """A limit a client could push against: its default and the help of its flag."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServerSettings:
    """Defaults suit a training cluster: OpenRLHF sends one sample (a few KB) per request.

    Every field after `token` is a limit: `cli.py` makes a flag of each (`--max-body-bytes`,
    …) from its type, default and help, and checks it (counts at least 1, seconds above 0).
    """

    config: str | None = None  # scorer config (JSON/YAML); None: the contract's defaults
    token: str | None = None  # bearer token every call but /health and /metrics must carry
    max_body_bytes: int = _limit(8 * 1024 * 1024, "request body; 413 beyond")  # checked before the body is read
    max_items: int = _limit(4096, "completions or queries per request; 413 beyond")
    max_text_chars: int = _limit(256 * 1024, "characters per text; 413 beyond")  # completion, query, prompt, label
    max_header_bytes: int = _limit(16 * 1024, "request line and headers; 431 beyond")  # h11's limit
    header_timeout: float = _limit(10.0, "seconds to receive a whole request head; a silent connection is closed then")
    body_timeout: float = _limit(30.0, "seconds to receive a body after its head")
    keep_alive_timeout: float = _limit(5.0, "seconds an idle connection is kept after a response")  # uvicorn's
    max_connections: int = _limit(512, "open connections per worker; 503 beyond")

    def to_env(self) -> dict[str, str]:
        """The variables that carry these settings to a worker (None values are left out)."""
        env = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                env[_env_name(item.name)] = str(value)
        return env


def _env_name(field: str) -> str:
    return {"config": SCORER_CONFIG_ENV, "token": ENV_TOKEN}.get(field, ENV_PREFIX + field.upper())


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


def limit_fields() -> list[Field]:
    """The limits, in order: every field that carries a flag's help."""
    return [item for item in fields(ServerSettings) if "help" in item.metadata]

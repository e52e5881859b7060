"""The scorer as an HTTP reward server (FastAPI + uvicorn; also deployable on Ray Serve).

    iadr1-reward-server [--host 127.0.0.1] [--port 5000] [--workers N] [--config scorer.yaml]

- `POST /get_reward`: OpenRLHF's protocol (`--reward.remote_url http://HOST:PORT/get_reward`):
  `{"query", "prompts", "labels"}` → `{"rewards", "scores", "extra_logs"}`.
- `POST /score`: `{"completions", "labels", "group"}` → every part of every score, and
  the advantages of a group.
- `GET /health`, `GET /metrics` (Prometheus text).

Safe by default: binds 127.0.0.1; a bearer token (`--token` or `IADR1_REWARD_TOKEN`)
is required on the scoring calls when set; bodies over the limit get 413 unread; bad
requests get a 4xx JSON error naming what is wrong. FastAPI and uvicorn are imported
here only, so the core scorer never needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .metrics import RewardMetrics
from .protocol import score_completions, score_queries
from .scorer import Scorer

logger = logging.getLogger(__name__)

ENV_CONFIG = "IADR1_SCORER_CONFIG"
ENV_TOKEN = "IADR1_REWARD_TOKEN"
ENV_MAX_BODY = "IADR1_REWARD_MAX_BODY_BYTES"
ENV_MAX_ITEMS = "IADR1_REWARD_MAX_ITEMS"
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_ITEMS = 4096
INLINE_CHARACTERS = 32 * 1024  # requests this small are scored on the event loop
KNOWN_PATHS = frozenset({"/get_reward", "/score", "/health", "/metrics", "/docs", "/openapi.json"})

Label = dict[str, Any] | str


class RewardRequest(BaseModel):
    """OpenRLHF's request: one label per query; the prompt locates the response."""

    model_config = ConfigDict(extra="ignore")
    query: list[str]
    prompts: list[str]
    labels: list[Label]


class RewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float] = Field(description="total / max reward, in [0, 1]")
    extra_logs: dict[str, list[float]]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completions: list[str]
    labels: list[Label] = Field(description="one per completion, or exactly one when group is true")
    group: bool = False


class ScoreItem(BaseModel):
    consistency: float
    accuracy: float
    location: float
    type: float
    total: float
    normalised: float
    answer: str | None
    predicted_cells: list[int]
    label_cells: list[int]
    type_rule: str | None
    gated: bool


class ScoreResponse(BaseModel):
    results: list[ScoreItem]
    advantages: list[float] | None = None
    has_signal: bool | None = None
    mean: float | None = None
    std: float | None = None


@dataclass(frozen=True)
class ServerSettings:
    config: str | None = None
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_items: int = DEFAULT_MAX_ITEMS


def settings_from_env() -> ServerSettings:
    """Settings from the environment (how uvicorn workers and Ray Serve replicas get them)."""
    return ServerSettings(
        config=os.environ.get(ENV_CONFIG) or None,
        token=os.environ.get(ENV_TOKEN) or None,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY)),
        max_items=int(os.environ.get(ENV_MAX_ITEMS, DEFAULT_MAX_ITEMS)),
    )


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class BodyLimitMiddleware:
    """413 for bodies over the limit: by Content-Length before reading anything, and
    by counting while reading a body of unknown length (chunked)."""

    def __init__(self, app, limit: int, metrics: RewardMetrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._reject(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit ourselves, then replay.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send) -> None:
        self.metrics.error("body_too_large")
        response = _error(413, f"request body over the limit of {self.limit} bytes")
        await response(scope, receive, send)


class LatencyMiddleware:
    """Counts every response by path and status and times it (plain ASGI: cheap)."""

    def __init__(self, app, metrics: RewardMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            path = scope.get("path", "")
            path = path if path in KNOWN_PATHS else "other"  # bounded label values
            self.metrics.observe(path, status, time.perf_counter() - start)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The reward server app, with one scorer built now (once per process)."""
    settings = settings or ServerSettings()
    scorer = Scorer.from_config(settings.config)
    metrics = RewardMetrics()
    app = FastAPI(
        title="iadr1-rl reward server",
        description="SC-GRPO rewards for IAD-R1 completions (OpenRLHF protocol at /get_reward).",
        version="0.1.0",
    )
    app.state.scorer, app.state.metrics, app.state.settings = scorer, metrics, settings

    def authorise(request: Request) -> JSONResponse | None:
        if settings.token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), settings.token):
            metrics.error("unauthorised")
            return JSONResponse(
                {"error": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return None

    def too_many(count: int) -> JSONResponse | None:
        if count > settings.max_items:
            metrics.error("too_many_items")
            return _error(413, f"{count} items in one request; the limit is {settings.max_items}")
        return None

    async def run_scoring(function, size: int, *args) -> JSONResponse:
        try:
            if size <= INLINE_CHARACTERS:
                # Less than a millisecond of work: a thread hop would cost more.
                result = function(scorer, *args)
            else:
                # Off the event loop: a large request does not stall health checks or others.
                result = await run_in_threadpool(function, scorer, *args)
        except ValueError as error:
            metrics.error("invalid_label_or_length")
            return _error(422, str(error))
        metrics.count_completions(len(args[0]))
        return JSONResponse(result)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            metrics.error("bad_json")
            return _error(400, "request body is not valid JSON")
        metrics.error("invalid_request")
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]), "problem": e["msg"]} for e in errors]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in detail)
        return _error(422, f"invalid request: {summary}", detail=detail)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        metrics.error("internal")
        return _error(500, "internal error")

    async def scoring_call(request: Request, texts: list[str], function, *args) -> JSONResponse:
        """Auth, the item cap, then scoring (texts: the queries or completions)."""
        rejected = authorise(request) or too_many(len(texts))
        if rejected:
            return rejected
        return await run_scoring(function, sum(map(len, texts)), texts, *args)

    @app.post("/get_reward", response_model=RewardResponse)
    async def get_reward(request: Request, body: RewardRequest):
        return await scoring_call(request, body.query, score_queries, body.prompts, body.labels)

    @app.post("/score", response_model=ScoreResponse)
    async def score(request: Request, body: ScoreRequest):
        return await scoring_call(request, body.completions, score_completions, body.labels, body.group)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "grid": list(scorer.grid),
            "auth": settings.token is not None,
            "scorer": scorer.describe(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return metrics.render()

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(LatencyMiddleware, metrics=metrics)  # outermost: sees every response
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers and Ray Serve replicas."""
    return create_app(settings_from_env())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iadr1-reward-server", description="Serve the SC-GRPO scorer over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes, each with its own scorer")
    parser.add_argument("--config", help="scorer config (JSON/YAML: grid, weights, vocabulary)")
    parser.add_argument("--token", help=f"require this bearer token on scoring calls (or set {ENV_TOKEN})")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    parser.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS, help="completions per request")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.max_items < 1 or args.max_body_bytes < 1:
        parser.error("--workers, --max-items and --max-body-bytes must be at least 1")
    try:
        Scorer.from_config(args.config)  # fail here, clearly, not in every worker
    except (ValueError, TypeError) as error:
        parser.error(f"--config: {error}")
    # Workers are separate processes: they read their settings from the environment.
    if args.config:
        os.environ[ENV_CONFIG] = os.path.abspath(args.config)
    if args.token:
        os.environ[ENV_TOKEN] = args.token
    os.environ[ENV_MAX_BODY] = str(args.max_body_bytes)
    os.environ[ENV_MAX_ITEMS] = str(args.max_items)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(ENV_TOKEN):
        logger.warning("serving on %s without a token: anyone who reaches this port can call it", args.host)

    import uvicorn

    uvicorn.run(
        "rewards.server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

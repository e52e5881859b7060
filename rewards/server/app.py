"""The reward server's app (FastAPI): OpenRLHF's protocol, ours, health and metrics.

- `POST /get_reward`: OpenRLHF's protocol (`--reward.remote_url http://HOST:PORT/get_reward`):
  `{"query", "prompts", "labels"}` → `{"rewards", "scores", "extra_logs"}`.
- `POST /score`: `{"completions", "labels", "group"}` → every part of every score, and
  the advantages of a group.
- `GET /health`, `GET /metrics` (Prometheus text).

Every error is `{"error": message}` with its status. FastAPI, uvicorn and
prometheus_client are imported by the server package only, so the core scorer never
needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..scorer import Scorer
from ..wire import score_completions, score_queries
from . import metrics
from .gates import AuthGate, BodyLimit, RequestMetrics
from .settings import ServerSettings, settings_from_env

logger = logging.getLogger(__name__)

INLINE_CHARACTERS = 32 * 1024  # requests this small are scored on the event loop

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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _texts(values: Iterable[Any]) -> Iterable[str]:
    """Every text a request carries: its strings, and the string values of label dicts."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, str))


class Limits:
    """The request-size limits checked once a body is parsed: items and characters per text."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    def refusal(self, items: int, *fields: Sequence[Any]) -> JSONResponse | None:
        s = self.settings
        if items > s.max_items:
            metrics.ERRORS.labels("too_many_items").inc()
            return _error(413, f"{items} items in one request; the limit is {s.max_items}")
        for text in (t for field in fields for t in _texts(field)):
            if len(text) > s.max_text_chars:
                metrics.ERRORS.labels("text_too_long").inc()
                return _error(413, f"a text of {len(text)} characters; the limit is {s.max_text_chars}")
        return None


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The reward server app, with one scorer built now (once per process)."""
    settings = settings or ServerSettings()
    scorer = Scorer.from_config(settings.config)
    limits = Limits(settings)
    app = FastAPI(
        title="iadr1-rl reward server",
        description="SC-GRPO rewards for IAD-R1 completions (OpenRLHF protocol at /get_reward).",
        version="0.1.0",
    )
    app.state.scorer, app.state.settings = scorer, settings

    async def run_scoring(function, texts: list[str], *args) -> JSONResponse:
        try:
            if sum(map(len, texts)) <= INLINE_CHARACTERS:
                # Less than a millisecond of work: a thread hop would cost more.
                result = function(scorer, texts, *args)
            else:
                # Off the event loop: a large request does not stall health checks or others.
                result = await run_in_threadpool(function, scorer, texts, *args)
        except ValueError as error:
            metrics.ERRORS.labels("invalid_label_or_length").inc()
            return _error(422, str(error))
        metrics.COMPLETIONS.inc(len(texts))
        return JSONResponse(result)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        invalid = [e for e in errors if e.get("type") == "json_invalid"]
        if invalid:
            metrics.ERRORS.labels("bad_json").inc()
            reason = (invalid[0].get("ctx") or {}).get("error", "")
            return _error(400, f"request body is not valid JSON{': ' + reason if reason else ''}")
        metrics.ERRORS.labels("invalid_request").inc()
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors[:10])
        return _error(422, f"invalid request: {fields}")

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # 404, 405 and body-parse errors in the server's one error shape.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        metrics.ERRORS.labels("internal").inc()
        return _error(500, "internal error")

    @app.post("/get_reward", response_model=RewardResponse)
    async def get_reward(body: RewardRequest):
        refused = limits.refusal(len(body.query), body.query, body.prompts, body.labels)
        return refused or await run_scoring(score_queries, body.query, body.prompts, body.labels)

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: ScoreRequest):
        refused = limits.refusal(len(body.completions), body.completions, body.labels)
        return refused or await run_scoring(score_completions, body.completions, body.labels, body.group)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "grid": list(scorer.grid),
            "auth": settings.token is not None,
            "scorer": scorer.describe(),
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Added last = outermost: metrics see every answer, auth comes before any body byte.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AuthGate, token=settings.token)
    app.add_middleware(RequestMetrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers and Ray Serve replicas: settings from the environment."""
    return create_app(settings_from_env())

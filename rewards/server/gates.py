"""What every request passes before the app reads it, as plain ASGI (cheap, and in this
order, outermost first):

1. `RequestMetrics`: counts each request by endpoint and status, times it, tracks those
   in flight; a client that goes away before its answer counts as 499, not as 500;
2. `AuthGate`: with a token, every path but /health and /metrics needs
   `Authorization: Bearer <token>`, checked from the headers alone: no body byte is read
   before it passes, and the comparison is of bytes, in constant time;
3. `BodyLimit`: a body over the limit gets 413, by its Content-Length before it is read,
   or while counting a body of unknown length.

The server library enforces the rest at the connection (see `h11_guard.py`).
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from . import metrics

OPEN_PATHS = frozenset({"/health", "/metrics"})
KNOWN_PATHS = frozenset({"/get_reward", "/score", "/health", "/metrics", "/docs", "/openapi.json"})

Scope = dict[str, Any]


async def send_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """The one error shape of the server: `{"error": message}` with the status."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Requests by endpoint and status, latency, and requests in flight."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in KNOWN_PATHS else "other"  # a bounded set of label values
        status = 500
        disconnected = False

        async def watch_receive():
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, watch_receive, record_status)
        finally:
            metrics.IN_FLIGHT.dec()
            if disconnected:
                status = 499  # the client closed the request before its answer
            metrics.REQUESTS.labels(endpoint, str(status)).inc()
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - start)


class AuthGate:
    """401 unless the bearer token matches, decided from the headers only."""

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token.encode("ascii") if token else None

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._authorised(scope):
            await self.app(scope, receive, send)
            return
        metrics.ERRORS.labels("unauthorised").inc()
        await send_error(send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")])

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                # Bytes as sent: a non-ASCII token simply does not match.
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
        return False


class BodyLimit:
    """413 for bodies over the limit: by Content-Length before reading anything, and by
    counting while reading a body of unknown length (chunked)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._reject(send)
            else:
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
                await self._reject(send)
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

    async def _reject(self, send) -> None:
        metrics.ERRORS.labels("body_too_large").inc()
        await send_error(send, 413, f"request body over the limit of {self.limit} bytes")

"""uvicorn's h11 protocol with the connection limits a shared network needs.

uvicorn enforces with its own settings: the size of a request head (h11's incomplete-event
limit: no request line and headers beyond `max_header_bytes` are buffered) and the idle
time of a keep-alive connection after a response (`timeout_keep_alive`). It has no timeout
for a connection that says nothing, sends its head slowly or stalls in its body, answers
an oversized head with a bare 400, and answers its concurrency limit in plain text. This
subclass adds, at the connection, before the app sees a byte:

- a request head must be whole within `header_timeout` seconds of the connection opening
  or of the first byte of a next request: a silent connection is closed, one sending its
  head slowly gets 408 (slowloris);
- a body must be whole within `body_timeout` seconds of its head, or the connection is
  closed (the app sees the client go away);
- an oversized head gets 431, any other malformed request 400, both `{"error": …}`;
- beyond `max_connections` open connections per worker, a request gets 503 `{"error": …}`
  (the same check as uvicorn's `limit_concurrency`, in the server's error shape).
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import metrics
from .settings import settings_from_env

logger = logging.getLogger(__name__)

HEAD_TOO_LARGE = "request line and headers over the limit of {} bytes"


def _json_error(status: int, message: str):
    """An ASGI app answering `{"error": message}` with `status` and closing the connection."""
    body = json.dumps({"error": message}).encode()

    async def app(scope, receive, send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return app


class GuardedH11Protocol(H11Protocol):
    """See the module docstring. Settings come from the environment, as the app's do."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = settings_from_env()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.max_connections = settings.max_connections
        self.max_header_bytes = settings.max_header_bytes
        self.deadline: asyncio.TimerHandle | None = None
        self.deadline_phase: str | None = None
        self.busy = _json_error(503, f"over {self.max_connections} open connections; try again")
        self.too_large = _json_error(431, HEAD_TOO_LARGE.format(self.max_header_bytes))

    def _head_size(self) -> int:
        scope = self.scope
        if scope is None:
            return 0
        target = len(scope["raw_path"]) + len(scope["query_string"]) + 1
        return len(scope["method"]) + target + sum(len(name) + len(value) + 4 for name, value in scope["headers"])

    # uvicorn picks `self.app` for each whole request head: the place to refuse one.
    @property
    def app(self):
        if self._head_size() > self.max_header_bytes:
            # h11 bounds what it buffers of an incomplete head; a whole head read at once
            # (loopback delivers up to 256 KB a read) is measured here.
            metrics.ERRORS.labels("header_too_large").inc()
            return self.too_large
        if len(self.connections) > self.max_connections:
            logger.warning("refusing a request: over %d open connections", self.max_connections)
            metrics.ERRORS.labels("too_many_connections").inc()
            return self.busy
        return self._app

    @app.setter
    def app(self, value) -> None:
        self._app = value

    # ------------------------------------------------------------------- timeouts
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head", self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.deadline_phase == "head" and not self.conn.trailing_data[0]:
            self._disarm()  # idle between requests: uvicorn's keep-alive timeout applies
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline the request's state calls for (never restarted by more bytes)."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self.deadline_phase != "body":
                self._arm("body", self.body_timeout)
        elif state is h11.IDLE:
            idle_between_requests = self.cycle is not None and not self.conn.trailing_data[0]
            if self.deadline_phase != "head" and not idle_between_requests:
                self._arm("head", self.header_timeout)  # the first bytes of a next head arrived
        else:
            self._disarm()  # the request is whole: the app and the response take over

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self.deadline_phase = phase
        self.deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline, self.deadline_phase = None, None

    def _expire(self) -> None:
        phase = self.deadline_phase
        self.deadline, self.deadline_phase = None, None
        if self.transport.is_closing():
            return
        metrics.TIMEOUTS.labels(phase or "head").inc()
        if phase == "body":
            # The app is waiting for the rest: it sees the client go away once we close.
            self._send_error(408, f"request body not received within {self.body_timeout:g} s")
        elif self.conn.trailing_data[0]:
            self._send_error(408, f"request head not received within {self.header_timeout:g} s")
        else:
            logger.info("closing a connection that sent nothing for %g s", self.header_timeout)
            self.transport.close()

    # ------------------------------------------------------------- protocol errors
    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for every malformed request: an oversized head is a 431."""
        if len(self.conn.trailing_data[0]) > self.max_header_bytes:
            metrics.ERRORS.labels("header_too_large").inc()
            self._send_error(431, HEAD_TOO_LARGE.format(self.max_header_bytes))
        else:
            metrics.ERRORS.labels("bad_http").inc()
            self._send_error(400, "invalid HTTP request")

    def _send_error(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had already begun: nothing more can be said
            pass
        self.transport.close()

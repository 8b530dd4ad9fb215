"""The HTTP/1.1 connection of ``mltk serve``: uvicorn's httptools protocol with the limits that
a server open to any client needs (nginx and Triton have the same ones).

- At most ``max_connections`` open connections per worker: one more is answered 503 and closed
  as soon as it is accepted, before anything is read (idle sockets cannot use up the process's
  file descriptors).
- The request line and headers must arrive within ``header_timeout`` seconds and
  ``max_header_bytes``: else 408 or 431, and the connection is closed. Bytes are counted as
  they arrive, so a huge header is refused after reading the limit, in linear time (httptools
  joins the pieces of one header value by copying, quadratic in its size).
- The body must arrive within ``body_timeout`` seconds of the headers: else 408 and close.
- A connection that sent nothing is closed silently after ``header_timeout``; an idle
  keep-alive connection after uvicorn's ``timeout_keep_alive``.
- On SIGTERM, a request whose body is still arriving is answered 503 at once (a client trickling
  its body must not hold the stop for ``graceful_timeout``); requests being answered finish.
- A connection to be closed after an answer given before its request's body had all arrived (a
  413, a 401; the client sent ``Connection: close``, as Python's urllib does) is closed only once
  the rest of the body has been read and discarded, ``linger_bytes`` and ``linger_seconds`` at
  most, as nginx's lingering close: closing a socket with unread data sends a reset, and a client
  that sends its whole body before reading (urllib) would see ``Connection reset by peer`` or
  ``Broken pipe`` instead of the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 16 * 1024
    linger_bytes: int = 64 * 1024 * 1024
    linger_seconds: float = 10.0


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def raw_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` response with the JSON error body of every route."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"]
    if status == 503:
        head.append("retry-after: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _LingeringTransport:
    """The connection's transport as a request cycle sees it: a close while the request's body
    is still arriving waits for the body (:meth:`GuardedHttpToolsProtocol._close_after_body`)."""

    def __init__(self, protocol: GuardedHttpToolsProtocol, transport: Any) -> None:
        self._protocol = protocol
        self._transport = transport

    def close(self) -> None:
        self._protocol._close_after_body()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with connection, time and header-size limits."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn logs access when "uvicorn.access" has a handler (mltk gives it one for -v);
        # without --access-log each response built a line that the level then dropped
        self.access_log = self.access_log and bool(getattr(config, "access_log", True))
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) \
            or ConnectionLimits()
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request line or headers
        self._head_bytes = 0  # ... and this many of them have arrived
        self._refused = False
        self._body_bytes = 0  # of the request being read
        self._linger_left: int | None = None  # draining a refused body: bytes still allowed

    # -- connection ----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self._refused = True
            transport.write(raw_response(503, "too many open connections: retry later"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None or self.transport.is_closing():
            return
        if self._linger_left is not None:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
                return
        if self._in_head:
            self._head_bytes += len(data)
            if self._timer is None:  # the first bytes of the next request
                self._arm(self.limits.header_timeout, self._head_timed_out)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refusal):
                self._close_with(refusal.status, str(refusal))
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._close_with(431, self._too_large())

    # -- parser callbacks ----------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.limits.max_header_bytes:
            raise _Refusal(431, self._too_large())
        self._disarm()
        self._arm(self.limits.body_timeout, self._body_timed_out)
        self._body_bytes = 0
        super().on_headers_complete()
        if self.cycle is not None:  # its close waits for the body (see _close_after_body)
            self.cycle.transport = _LingeringTransport(self, self.transport)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()
        if self._linger_left is not None:  # the refused body has all been read: close now
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._linger_left is not None and self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()  # the linger timer bounds the wait instead
            self.timeout_keep_alive_task = None

    def _close_after_body(self) -> None:
        """Close, once the rest of the request body (if still arriving) has been discarded
        within ``linger_bytes`` and ``linger_seconds``; at once when it is larger than that."""
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is None or not cycle.more_body or self._in_head:
            self.transport.close()
            return
        length = next((v for k, v in self.headers if k == b"content-length"), b"")
        left = int(length) - self._body_bytes if length.isdigit() else 0
        if left > self.limits.linger_bytes:
            self.transport.close()
            return
        self._linger_left = self.limits.linger_bytes
        self._arm(self.limits.linger_seconds, self.transport.close)
        self.flow.resume_reading()

    def _too_large(self) -> str:
        return (f"the request line and headers are larger than max_header_kb "
                f"({self.limits.max_header_bytes / 1024:g} KB)")

    # -- timers --------------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _busy(self) -> bool:
        """A request of this connection is being answered (or its reading is paused by us)."""
        return bool(self.cycle and not self.cycle.response_complete and not self.cycle.more_body
                    ) or self.flow.read_paused

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._busy():  # the client may send its next request while we answer this one
            self._arm(self.limits.header_timeout, self._head_timed_out)
        elif self._head_bytes == 0:
            self.transport.close()  # connected and said nothing: no answer owed
        else:
            self._close_with(408, f"the request line and headers took longer than "
                             f"header_timeout ({self.limits.header_timeout:g} s)")

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.cycle is not None and self.cycle.response_complete:
            self.transport.close()  # answered already (e.g. 401 before the body): no more owed
            return
        if self.flow.read_paused:
            self._arm(self.limits.body_timeout, self._body_timed_out)
            return
        self._close_with(408, f"the request body took longer than body_timeout "
                         f"({self.limits.body_timeout:g} s)")

    # -- stopping ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.more_body \
                and not cycle.response_started:
            self._close_with(503, "the server is stopping: retry")
        else:
            super().shutdown()

    def _close_with(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response has begun, then close; the request being read
        (if any) sees a disconnected client."""
        self._disarm()
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(raw_response(status, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

"""Connections below the app: limits that hold before any request is complete, closes that never wait.

uvicorn's HTTP (h11) and WebSocket (websockets sans-I/O) protocols, extended so that
- a connection must complete its request headers within `header_timeout_s` of opening (or of its last
  response): a socket that sends nothing, or half a request, holds a file descriptor only that long;
- at most `max_connections` are open: at the cap a new connection evicts the oldest one still waiting for
  its request, or is refused, so file descriptors never run out (`/healthz` keeps answering);
- a peer that accepts no data for `write_timeout_s` is reset: a client that stops reading holds neither
  its socket, nor its kernel buffers, nor a session;
- a close never waits on a write buffer that does not drain: the transport is reset instead;
- a WebSocket message may be read ahead of the app (up to `ws_max_queue` / `READ_AHEAD_CHARS`), so pings
  and pongs are seen while a busy session works through its audio;
- the handshake headers are never logged (websockets logs them at DEBUG, keys included), nor is invalid
  UTF-8 logged with a traceback; accept() failures and limit hits are logged once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import socket
import struct
import time
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 5.0  # a closed connection that is still open this long after is reset
READ_AHEAD_CHARS = 1 << 20  # client messages read ahead of a session's reader, at most
MAX_HEADER_BYTES = 16 * 1024  # h11's own default, stated: a request head larger than this gets a 400
FD_RESERVE = 128  # file descriptors kept for everything but connections (model files, threads, logs)
LOG_INTERVAL_S = 10.0


def connection_cap(settings: Settings) -> int:
    """`max_connections`, or what the open-file limit leaves for connections."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_sessions = 4 * settings.max_sessions + 256
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return by_sessions
    return max(16, min(soft - FD_RESERVE, by_sessions))


def reset(transport: asyncio.BaseTransport) -> None:
    """Close now, discarding what is buffered, with a TCP reset so the kernel frees its buffers too."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Guard:
    """The limits every connection of one server shares, what they dropped, and a log that cannot flood."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.max_connections = connection_cap(settings)
        self._logged: dict[str, float] = {}
        self._folded: Counter[str] = Counter()

    def note(self, event: str, **fields: Any) -> None:
        """One log line per event (and reason) per `LOG_INTERVAL_S`, with how many were folded into it."""
        key, now = f"{event}/{fields.get('reason', '')}", time.monotonic()
        if now - self._logged.get(key, -math.inf) < LOG_INTERVAL_S:
            self._folded[key] += 1
            return
        self._logged[key] = now
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        log.warning("event=%s %s folded=%d", event, detail, self._folded.pop(key, 0))

    def drop(self, transport: asyncio.BaseTransport, reason: str, client: Any, session: str | None = None) -> None:
        self.metrics.connections_dropped.labels(reason).inc()
        self.note("connection_dropped", reason=reason, client=addr(client), session=session)
        reset(transport)

    def admit(self, new: HttpProtocol) -> bool:
        """At the cap, evict the connection that has waited longest for its request; else refuse `new`."""
        if len(new.connections) <= self.max_connections:
            return True
        waiting = [c for c in new.connections if c is not new and isinstance(c, HttpProtocol) and c.waiting()]
        if waiting:
            victim = min(waiting, key=lambda c: c.waiting_since)
            self.drop(victim.transport, "evicted", victim.client)
            return True
        self.drop(new.transport, "connection_limit", new.client)
        return False

    def quiet_accept_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncio logs every failed accept() with a traceback; out of descriptors, that floods the log."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
                self.metrics.accept_errors.inc()
                self.note("accept_failed", error=repr(context.get("exception")))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)


def addr(client: Any) -> str | None:
    """`host:port` of an ASGI / uvicorn client tuple, for the log."""
    return f"{client[0]}:{client[1]}" if client else None


class HttpProtocol(H11Protocol):
    """h11 with a header timeout, the connection cap and a write-stall limit."""

    guard: Guard  # set by `protocols`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since = 0.0
        self._header_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.guard.admit(self):
            self._expect_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def waiting(self) -> bool:
        """Still on HTTP, with no complete request head and no request being answered."""
        return (self.transport is not None and self.transport.get_protocol() is self and not self.transport.is_closing()
                and self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete))

    def _expect_request(self) -> None:
        self.waiting_since = self.loop.time()
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.guard.settings.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.waiting():
            self.guard.drop(self.transport, "header_timeout", self.client)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_request()  # the next request's head is timed too (keep-alive closes idle ones first)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade(event)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.guard.settings.write_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.transport.get_protocol() is self:
            self.guard.drop(self.transport, "write_timeout", self.client)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._stall_timer = None


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets sans-I/O with a write-stall limit, closes that reset a stuck peer, and read-ahead."""

    guard: Guard  # set by `protocols`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False  # websockets would log every handshake header at DEBUG, keys included
        self.close_timeout = CLOSE_GRACE_S
        self._stall_timer: asyncio.TimerHandle | None = None
        self._reap_timer: asyncio.TimerHandle | None = None
        self._queued_chars = 0

    def session(self) -> str | None:
        """The session id the app put in the connection's state, for the log."""
        scope = getattr(self, "scope", None)
        return scope.get("state", {}).get("session_id") if scope else None

    def _drop(self, reason: str) -> None:
        if not self.disconnected:
            self.guard.drop(self.transport, reason, self.client, self.session())

    # -- writing --------------------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.guard.settings.write_timeout_s, self._drop,
                                                     "write_timeout")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    async def send(self, message: Any) -> None:
        if (message["type"] == "websocket.close" and self.handshake_complete and not self.close_sent
                and not self.disconnected and not self.writable.is_set()):
            self._drop("close_blocked")  # the close frame would wait behind data the peer does not read
            return
        await super().send(message)
        if message["type"] == "websocket.close":
            self._reap_later()

    def _reap_later(self) -> None:
        """Whatever closed the connection, it is gone within the grace (plus uvicorn's own close timer)."""
        if self._reap_timer is None and not self.disconnected:
            self._reap_timer = self.loop.call_later(2 * CLOSE_GRACE_S, self._drop, "close_timeout")

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._reap_later()

    def keepalive_timeout(self) -> None:
        self.guard.metrics.connections_dropped.labels("keepalive_timeout").inc()
        self.guard.note("connection_dropped", reason="keepalive_timeout", client=addr(self.client),
                        session=self.session())
        super().keepalive_timeout()
        self._reap_later()

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        self._reap_later()

    def shutdown(self) -> None:
        super().shutdown()
        self._reap_later()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stall_timer, self._reap_timer):
            if timer is not None:
                timer.cancel()
        self._stall_timer = self._reap_timer = None
        super().connection_lost(exc)

    # -- reading --------------------------------------------------------------------------------------
    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:  # past the close: reads go on only to see the peer's close
            return
        message: dict[str, Any]
        if self.curr_msg_data_type == "text":
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self.guard.metrics.connections_dropped.labels("invalid_utf8").inc()
                self.guard.note("connection_dropped", reason="invalid_utf8", client=addr(self.client),
                                session=self.session())
                self.conn.send_close(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(message)
        self._queued_chars += _size(message)
        if not self.read_paused and (self.queue.qsize() >= self.config.ws_max_queue
                                     or self._queued_chars >= READ_AHEAD_CHARS):
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        self._queued_chars -= _size(message)
        if (self.read_paused and self.queue.qsize() < self.config.ws_max_queue
                and self._queued_chars < READ_AHEAD_CHARS):
            self.read_paused = False
            self.transport.resume_reading()
        return message


def _size(message: Any) -> int:
    if message.get("type") != "websocket.receive":
        return 0
    return len(message.get("text") or message.get("bytes") or b"")


def protocols(guard: Guard) -> tuple[type[HttpProtocol], type[WebSocketProtocol]]:
    """The protocol classes of one server, bound to its guard."""
    http = type("DuoHttpProtocol", (HttpProtocol,), {"guard": guard})
    ws = type("DuoWebSocketProtocol", (WebSocketProtocol,), {"guard": guard})
    return http, ws


def uvicorn_config(app: Any, settings: Settings, guard: Guard, **options: Any) -> uvicorn.Config:
    """uvicorn serving `app` with duo's protocols and every limit uvicorn has of its own set from `settings`."""
    http, ws = protocols(guard)
    options.setdefault("host", settings.host)
    options.setdefault("port", settings.port)
    return uvicorn.Config(
        app, http=http, ws=ws,
        ws_max_size=settings.max_frame_bytes,  # refused from the frame header, before any of it is buffered
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]  # a float works as well
        # uvicorn answers 503 past this many connections or requests in flight; the cap above keeps
        # connections at `max_connections`, so this bounds requests still running on connections gone.
        limit_concurrency=guard.max_connections + 1,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=10,
        **options,
    )


"""WebSocket connections under limits: a write-stall limit, closes that reset a stuck peer, bounded read-ahead.

A message may be read ahead of the app (up to `ws_max_queue` / `READ_AHEAD_CHARS`), so pings and pongs are
seen while a busy session works through its audio; invalid UTF-8 closes with 1007, logged without a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .guard import Guard, addr

CLOSE_GRACE_S = 5.0  # a closed connection that is still open this long after is reset
READ_AHEAD_CHARS = 1 << 20  # client messages read ahead of a session's reader, at most


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

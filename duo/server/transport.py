"""A session's socket: client frames in (limits, parsing), server events out through a bounded queue.

Nothing here knows what the events mean. The reader enforces the idle timeout and session length (the
frame size is the connection's, `connections/`) and hands each parsed client event to the conversation;
a `ProtocolError` becomes an `error` event and the session goes on, as it does when applying an event
fails (`internal_error`). The writer serializes server events in order. A client that stops reading
fills its queue and is closed (1008), or its socket stalls and is reset (`connections/`): the engine
loop and the other sessions never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import protocol as p
from . import server_events as se
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)


class SlowClient(Exception):
    """The client stopped reading; its connection is being closed."""


class Outbox:
    """Server events waiting for the socket, in order, at most `limit` of them.

    An interruption may withdraw the queued audio of the response it stopped (`drop_audio`): the client
    would flush it anyway. Every other event — control events, transcripts, `response.done` — is delivered.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[se.ServerEvent | None] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: se.ServerEvent) -> None:
        if len(self._items) >= self.limit:
            raise SlowClient
        self._items.append(event)
        self._ready.set()

    def drop_audio(self, response_id: str) -> int:
        """Withdraw the queued audio deltas of one response; returns how many."""
        kept = deque(e for e in self._items
                     if not (isinstance(e, se.OutputAudioDelta) and e.response_id == response_id))
        dropped, self._items = len(self._items) - len(kept), kept
        return dropped

    def close(self) -> None:
        """The writer stops after what is queued now."""
        self._items.append(None)
        self._ready.set()

    async def get(self) -> se.ServerEvent | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class Transport:
    def __init__(self, ws: WebSocket, settings: Settings, metrics: Metrics, beta: bool, session_id: str) -> None:
        self.ws, self.settings, self.metrics, self.beta, self.session_id = ws, settings, metrics, beta, session_id
        self.outbox = Outbox(settings.outbound_queue)
        self._closing: asyncio.Future[Any] | None = None
        self._close_with: tuple[int, str] | None = None  # the close the writer sends after the queued events

    def send(self, event: se.ServerEvent) -> None:
        try:
            self.outbox.put(event)
        except SlowClient:
            if self._closing is None:
                log.warning("session=%s event=slow_client queued=%d", self.session_id, len(self.outbox))
                self.metrics.connections_dropped.labels("queue_full").inc()
                # the connection resets rather than wait for a buffer the client does not drain
                self._closing = asyncio.ensure_future(self.close(1008, "client too slow"))
            raise

    def error(self, code: str, message: str, event_id: str | None = None, param: str | None = None,
              kind: str = "invalid_request_error") -> None:
        self.metrics.errors.labels(code).inc()
        self.send(se.Error.of(code, message, event_id, param, kind))

    async def close(self, code: int, reason: str = "") -> None:
        """End the session with `code` once the events queued so far are written (an `error` reaches the
        client before the close that it explains)."""
        if self._close_with is None:
            self._close_with = (code, reason)
            self.outbox.close()

    async def write(self) -> None:
        while (event := await self.outbox.get()) is not None:
            if (text := event.to_json(self.beta)) is not None:
                await self.ws.send_text(text)
        if self._close_with is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(*self._close_with)

    async def read(self, handle: Callable[[Any], Awaitable[None]]) -> None:
        """Parse client frames and hand them to `handle` until the client leaves or a limit ends the session."""
        settings = self.settings
        deadline = time.monotonic() + settings.max_session_s
        while True:
            timeout = min(settings.idle_timeout_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(self.ws.receive(), max(timeout, 0.0))
            except TimeoutError:
                over = time.monotonic() >= deadline
                self.error("session_expired" if over else "idle_timeout",
                           "maximum session length reached" if over else "no client events for too long")
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is None:
                continue
            event: Any = None
            try:
                event = p.parse_client_event(raw)
                await handle(event)
            except p.ProtocolError as exc:
                self.error(exc.code, exc.message, exc.event_id, exc.param)
            except (SlowClient, WebSocketDisconnect):
                raise
            except Exception as exc:  # a failure applying one event: the client is told, the session goes on
                kind = getattr(event, "type", None)
                log.exception("session=%s event=handler_failed type=%s", self.session_id, kind)
                self.error("internal_error", f"the server failed to apply {kind}: {type(exc).__name__}",
                           getattr(event, "event_id", None), kind="server_error")

    async def finish(self, writer: asyncio.Task[None]) -> None:
        """Let the writer flush what is queued (briefly), then stop it."""
        if not writer.done():
            self.outbox.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2.0)
        writer.cancel()

"""A session's socket: client frames in (limits, parsing), server events out through a bounded queue.

Nothing here knows what the events mean. The reader enforces the frame size, idle timeout and session
length and hands each parsed client event to the conversation; a `ProtocolError` becomes an `error` event
and the session goes on. The writer serializes server events in order. A client that stops reading fills
its queue and is closed (1008): the engine loop and the other sessions never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

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

    def send(self, event: se.ServerEvent) -> None:
        try:
            self.outbox.put(event)
        except SlowClient:
            if self._closing is None:
                log.warning("session=%s event=slow_client queued=%d", self.session_id, len(self.outbox))
                self._closing = asyncio.ensure_future(self.ws.close(1008, "client too slow"))
            raise

    def error(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        self.metrics.errors.labels(code).inc()
        self.send(se.Error.of(code, message, event_id, param))

    async def close(self, code: int, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    async def write(self) -> None:
        while (event := await self.outbox.get()) is not None:
            if (text := event.to_json(self.beta)) is not None:
                await self.ws.send_text(text)

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
            if len(raw) > settings.max_frame_bytes:
                self.error("frame_too_large", f"message of {len(raw)} bytes exceeds {settings.max_frame_bytes}")
                continue
            try:
                await handle(p.parse_client_event(raw))
            except p.ProtocolError as exc:
                self.error(exc.code, exc.message, exc.event_id, exc.param)

    async def finish(self, writer: asyncio.Task[None]) -> None:
        """Let the writer flush what is queued (briefly), then stop it."""
        if not writer.done():
            self.outbox.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2.0)
        writer.cancel()

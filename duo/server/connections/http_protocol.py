"""HTTP (h11) connections under limits: a header timeout, the connection cap with eviction, a write-stall limit.

A connection must complete its request headers within `header_timeout_s` of opening (or of its last
response); at the cap, a new connection evicts the oldest one still waiting for its request, or is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .guard import Guard


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
        if self._admit():
            self._expect_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _admit(self) -> bool:
        """At the cap, evict the connection that has waited longest for its request; else refuse this one."""
        if len(self.connections) <= self.guard.max_connections:
            return True
        waiting = [c for c in self.connections if c is not self and isinstance(c, HttpProtocol) and c.waiting()]
        if waiting:
            victim = min(waiting, key=lambda c: c.waiting_since)
            self.guard.drop(victim.transport, "evicted", victim.client)
            return True
        self.guard.drop(self.transport, "connection_limit", self.client)
        return False

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

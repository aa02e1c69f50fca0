"""Drives an `Engine` from asyncio: ticks while any session has work, sleeps when none has.

The forward pass runs in a worker thread so sockets stay served during a tick. Sessions push input at
any time (it is applied between ticks) and read their events from their own queue, so a slow reader
never holds up the loop. Anything that reads or rewires engine state from outside goes through
`between_ticks`, which runs it on the event loop while no tick is in flight. A tick that raises never ends
the loop: the sessions it carried are closed with an error and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import events as ev
from .config import SessionConfig
from .llm_engine import Engine, TickStats
from .session import Session

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class SessionHandle:
    """The caller's side of a session: input goes in, events come out of `events`."""

    session: Session
    loop: EngineLoop
    events: asyncio.Queue[ev.Event] = field(default_factory=asyncio.Queue)

    @property
    def id(self) -> str:
        return self.session.id

    def push_slice(self, text: str, final: bool = True, judge: bool = True, partial: bool = False) -> None:
        self.session.push_slice(text, final, judge, partial)
        self.loop.wake()

    def withdraw(self, response_id: str | None = None) -> None:
        self.session.withdraw(response_id)
        self.loop.wake()

    def respond(self, request: str | None = None) -> None:
        self.session.respond(request)
        self.loop.wake()

    def truncate(self, response_id: str, chars: int) -> None:
        self.session.truncate(response_id, chars)
        self.loop.wake()

    def pause(self) -> None:
        self.session.pause()
        self.loop.wake()

    def cancel(self) -> None:
        self.session.cancel()
        self.loop.wake()

    def close(self) -> None:
        self.loop.close_session(self.id)

    async def history(self) -> list[dict[str, str]]:
        """The conversation as the model holds it (a running reply ended where it is)."""
        return await self.loop.between_ticks(self.session.history)


class EngineLoop:
    def __init__(self, engine: Engine, on_tick: Callable[[float, TickStats], None] | None = None) -> None:
        self.engine = engine
        self.on_tick = on_tick
        self._handles: dict[str, SessionHandle] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._calls: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()

    @property
    def usable(self) -> bool:
        """Whether the engine can serve sessions (a broken device or engine cannot)."""
        return self.engine.usable

    def open_session(self, config: SessionConfig | None = None, history: list[dict[str, str]] | None = None,
                     session_id: str | None = None) -> SessionHandle:
        """A new session under the caller's `session_id`; raises as `Engine.open_session` does."""
        handle = SessionHandle(self.engine.open_session(config, history, session_id), self)
        self._handles[handle.id] = handle
        self.wake()
        return handle

    async def reopen(self, handle: SessionHandle, config: SessionConfig,
                     history: list[dict[str, str]] | None = None) -> SessionHandle:
        """The session under new settings, continuing its conversation or `history` (`Engine.replace_session`).

        Returns a new handle for the same id; the old one gets a final `SessionClosed("replaced")`, so its
        reader knows that nothing more comes. Raises ValueError, with the old session untouched, on bad settings.
        """

        def swap() -> SessionHandle:
            for event in self.engine.drain_text(handle.id):  # the old reply's newest text, to the old reader
                handle.events.put_nowait(event)
            new = SessionHandle(self.engine.replace_session(handle.id, config, history), self)
            self._handles[handle.id] = new
            handle.events.put_nowait(ev.SessionClosed(handle.id, reason="replaced"))
            return new

        new = await self.between_ticks(swap)
        self.wake()
        return new

    def close_session(self, session_id: str) -> None:
        self.engine.close_session(session_id)
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def between_ticks(self, fn: Callable[[], T]) -> T:
        """Run `fn` while no tick is in flight (the engine's state is only consistent between ticks)."""
        if self._task is None or self._task.done():
            return fn()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.append((fn, future))
        self.wake()
        return await future

    def _run_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            if future.done():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # text decoded mid-tick (in the tick's thread) reaches its readers then, ahead of the tick's own events
        self.engine.text.emit = lambda events: loop.call_soon_threadsafe(self._deliver, events)
        self._task = loop.create_task(self.run(), name="duo-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.engine.text.emit = None  # a tick run later, without the loop, returns all of its events
        self._run_calls()  # no tick runs any more

    async def run(self) -> None:
        while True:
            self._run_calls()
            if not self.engine.has_work():
                self._wake.clear()
                if not self.engine.has_work() and not self._calls:
                    await self._wake.wait()
                continue
            start = time.perf_counter()
            try:
                events = await asyncio.to_thread(self.engine.step)
            except Exception as exc:  # a defect outside any one session: end them all, keep the loop
                log.exception("event=tick_failed")
                events = self.engine.abort(exc)
            if self.on_tick is not None and self.engine.last_tick.forward_passes:
                self.on_tick(time.perf_counter() - start, self.engine.last_tick)
            self._deliver(events)

    def _deliver(self, events: list[ev.Event]) -> None:
        """Each event to its session's reader (on the event loop)."""
        for event in events:
            handle = self._handles.get(event.session_id)
            if handle is None:
                continue
            handle.events.put_nowait(event)
            if isinstance(event, ev.SessionClosed):
                del self._handles[event.session_id]

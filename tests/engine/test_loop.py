"""The asyncio loop ticks while there is work, sleeps when there is none, and routes events."""

from __future__ import annotations

import asyncio

from duo.engine import events as ev
from duo.engine.config import SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine
from duo.engine.loop import EngineLoop

from .helpers import scripted


async def _until_done(handle) -> list[ev.Event]:
    out = []
    while True:
        event = await asyncio.wait_for(handle.events.get(), timeout=60)
        out.append(event)
        if isinstance(event, ev.ResponseDone):
            return out


async def test_sessions_get_their_own_events_and_the_loop_sleeps(tiny) -> None:
    engine = Engine(tiny)
    loop = EngineLoop(engine)
    loop.start()
    try:
        def cfg() -> SessionConfig:
            return SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS),
                                 sampling=SamplingParams(max_new_tokens=5))

        a, b = loop.open_session(cfg()), loop.open_session(cfg())
        a.push_slice("first question")
        b.push_slice("second question")
        got_a, got_b = await asyncio.gather(_until_done(a), _until_done(b))
        assert all(e.session_id == a.id for e in got_a) and all(e.session_id == b.id for e in got_b)
        await asyncio.sleep(0.05)
        ticks = engine.ticks
        await asyncio.sleep(0.3)
        assert engine.ticks == ticks  # idle: no ticks
        a.close()
        closed = await asyncio.wait_for(a.events.get(), timeout=10)
        assert isinstance(closed, ev.SessionClosed) and a.id not in engine.sessions
    finally:
        await loop.stop()


async def test_between_ticks_runs_while_no_tick_is_in_flight(tiny) -> None:
    engine = Engine(tiny)
    in_tick = []
    step = engine.step

    def watched_step() -> list[ev.Event]:
        in_tick.append(True)
        try:
            return step()
        finally:
            in_tick.pop()

    engine.step = watched_step  # type: ignore[method-assign]
    loop = EngineLoop(engine)
    loop.start()
    try:
        handle = loop.open_session(SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS),
                                                 sampling=SamplingParams(max_new_tokens=200)))
        handle.push_slice("tell me a long story")
        while not isinstance(await asyncio.wait_for(handle.events.get(), 60), ev.TextDelta):
            pass
        seen = [await loop.between_ticks(lambda: bool(in_tick)) for _ in range(20)]
        assert not any(seen) and engine.ticks > 0
        turns = await loop.between_ticks(handle.session.history)  # the running reply, ended where it is
        assert [t["role"] for t in turns] == ["user", "assistant"] and turns[0]["content"] == "tell me a long story"
        assert turns[1]["content"] and handle.session.reply is not None
    finally:
        await loop.stop()

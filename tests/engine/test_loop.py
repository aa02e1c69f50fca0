"""The asyncio loop ticks while there is work, sleeps when there is none, and routes events."""

from __future__ import annotations

import asyncio

from duo.engine import events as ev
from duo.engine.config import SamplingParams, SessionConfig, State
from duo.engine.detokenizer import IncrementalDetokenizer
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
        while await loop.between_ticks(engine.has_work):  # the closes of both turns are prefilled
            await asyncio.sleep(0.01)
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


def _chatty() -> SessionConfig:
    return SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS, State.PROCESS),
                         sampling=SamplingParams(max_new_tokens=5))


async def _until(handle, kind: type) -> list[ev.Event]:
    out = []
    while not out or not isinstance(out[-1], kind):
        out.append(await asyncio.wait_for(handle.events.get(), timeout=60))
    return out


async def test_a_failed_forward_closes_its_sessions_with_an_error_and_the_loop_goes_on(tiny) -> None:
    engine = Engine(tiny)
    run, failures = engine.runner.run, [MemoryError("out of device memory")]

    def failing_once(chunks, **kw):
        if failures:
            raise failures.pop()
        return run(chunks, **kw)

    engine.runner.run = failing_once  # type: ignore[method-assign]
    loop = EngineLoop(engine)
    loop.start()
    try:
        victim = loop.open_session(_chatty(), session_id="sess_victim")
        victim.push_slice("hello there")
        got = await _until(victim, ev.SessionClosed)
        error = next(e for e in got if isinstance(e, ev.Error))
        assert error.fatal and error.code == "internal_error" and "MemoryError" in error.message
        assert got[-1].reason == "internal_error" and victim.id not in engine.sessions
        assert loop.usable and engine.kv.num_free == engine.kv.num_blocks - 1  # nothing of it is held
        survivor = loop.open_session(_chatty())
        survivor.push_slice("are you still there")
        assert any(isinstance(e, ev.ResponseDone) for e in await _until(survivor, ev.ResponseDone))
    finally:
        await loop.stop()


async def test_ticks_that_keep_failing_mark_the_engine_unusable(tiny) -> None:
    engine = Engine(tiny)

    def broken(chunks, **kw):
        raise RuntimeError("the device is gone")

    engine.runner.run = broken  # type: ignore[method-assign]
    loop = EngineLoop(engine)
    loop.start()
    try:
        for i in range(3):
            handle = loop.open_session(_chatty())
            handle.push_slice(f"attempt {i}")
            await _until(handle, ev.SessionClosed)
        assert not loop.usable and "the device is gone" in (engine.broken or "")
        try:
            loop.open_session(_chatty())
        except RuntimeError as exc:
            assert "unusable" in str(exc)
        else:
            raise AssertionError("a broken engine took a new session")
    finally:
        await loop.stop()


async def test_an_exception_outside_the_forward_ends_every_session_but_not_the_loop(tiny) -> None:
    engine = Engine(tiny)
    step, faults = engine.step, [KeyError("planning bug")]

    def faulty_step() -> list[ev.Event]:
        if faults:
            raise faults.pop()
        return step()

    engine.step = faulty_step  # type: ignore[method-assign]
    loop = EngineLoop(engine)
    loop.start()
    try:
        a, b = loop.open_session(_chatty()), loop.open_session(_chatty())
        a.push_slice("one")
        for handle in (a, b):
            got = await _until(handle, ev.SessionClosed)
            assert any(isinstance(e, ev.Error) and e.fatal for e in got)
        assert not engine.sessions and loop.usable
        c = loop.open_session(_chatty())
        c.push_slice("three")
        await _until(c, ev.ResponseDone)
    finally:
        await loop.stop()


async def test_reopen_keeps_the_id_and_the_conversation(tiny) -> None:
    engine = Engine(tiny)
    loop = EngineLoop(engine)
    loop.start()
    try:
        old = loop.open_session(_chatty(), session_id="sess_same")
        old.push_slice("my name is ana")
        await _until(old, ev.ResponseDone)
        new = await loop.reopen(old, SessionConfig(forecast_tokens=2, thresholds=scripted(State.PROCESS)))
        assert (await _until(old, ev.SessionClosed))[-1].reason == "replaced"
        assert new.id == "sess_same" and engine.sessions["sess_same"] is new.session
        assert [t["role"] for t in await new.history()] == ["user", "assistant"]
        new.push_slice("what is my name")
        await _until(new, ev.ResponseDone)
    finally:
        await loop.stop()


async def test_a_reply_replaced_mid_stream_gives_its_reader_all_of_its_text(tiny) -> None:
    """Text is decoded a tick late (while the next forward runs); a session replaced between ticks still
    hands its reader the text of every token its reply had, before it says it was replaced."""
    engine = Engine(tiny)
    loop = EngineLoop(engine)
    loop.start()
    try:
        old = loop.open_session(SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS),
                                              sampling=SamplingParams(max_new_tokens=60, ignore_eos=True)))
        old.push_slice("tell me a long story")
        got = [e for e in await _until(old, ev.TextDelta)]
        while sum(isinstance(e, ev.TextDelta) for e in got) < 4:
            got.append(await asyncio.wait_for(old.events.get(), timeout=60))
        reply = await loop.between_ticks(lambda: old.session.reply)
        await loop.reopen(old, SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS)))
        got += await _until(old, ev.SessionClosed)
        tokens = reply.seq.tokens[reply.start :]
        detok = IncrementalDetokenizer(tiny.tokenizer)
        expected = "".join(detok.push(t) for t in tokens)
        assert len(tokens) > 4 and "".join(e.delta for e in got if isinstance(e, ev.TextDelta)) == expected
        assert got[-1].reason == "replaced"
    finally:
        await loop.stop()

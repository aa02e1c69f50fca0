"""Sessions join and leave only at a tick's turnover; ids, limits, replacement and eviction hold between."""

from __future__ import annotations

import pytest

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SessionConfig
from duo.engine.llm_engine import Engine


def test_sessions_join_and_leave_at_the_turnover_only(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_sessions=2))
    registry = engine.registry
    a = engine.open_session(session_id="a")
    assert registry.find("a") is a and "a" not in engine.sessions and registry.changing
    with pytest.raises(ValueError, match="already open"):
        engine.open_session(session_id="a")
    engine.open_session(session_id="b")
    with pytest.raises(RuntimeError, match="session limit"):
        engine.open_session(session_id="c")
    engine.step()  # joins them and prefills their conversations
    assert set(engine.sessions) == {"a", "b"} and not registry.changing
    free = engine.kv.num_free
    engine.close_session("a")
    assert "a" in engine.sessions  # until the next turnover
    events, left = registry.turnover()
    assert left and [type(e) for e in events] == [ev.SessionClosed] and set(engine.sessions) == {"b"}
    assert engine.kv.num_free > free  # its KV went back to the pool
    engine.open_session(session_id="c")  # the freed place is taken again


def test_a_replaced_session_keeps_its_place_joining_or_live(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_sessions=4))
    engine.open_session(session_id="live")
    engine.step()
    engine.open_session(session_id="joining")
    for sid in ("live", "joining"):
        old = engine.registry.find(sid)
        new = engine.replace_session(sid, SessionConfig(instructions="be brief"))
        assert new is not old and engine.registry.find(sid) is new
    assert set(engine.sessions) == {"live"} and [s.id for s in engine.registry.joining] == ["joining"]
    assert engine.registry.find("joining").framing is engine.sessions["live"].framing  # one per instructions
    with pytest.raises(KeyError):
        engine.replace_session("nobody", SessionConfig())
    kept = engine.sessions["live"]
    with pytest.raises(ValueError):
        engine.replace_session("live", SessionConfig(), history=[{"role": "narrator", "content": "x"}])
    assert engine.sessions["live"] is kept  # settings that fail leave the session as it was


def test_an_evicted_session_is_told_why_and_the_others_stay(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_sessions=4))
    a, b = engine.open_session(session_id="a"), engine.open_session(session_id="b")
    engine.step()
    out = engine.registry.fail(a, RuntimeError("broken slice"))
    assert [type(e) for e in out] == [ev.Error, ev.SessionClosed]
    assert out[0].code == "internal_error" and "broken slice" in out[0].message and out[0].fatal
    assert set(engine.sessions) == {"b"} and engine.registry.find("b") is b

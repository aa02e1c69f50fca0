"""The paged pool grows for a crowd and gives the memory back once the crowd has left."""

from __future__ import annotations

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine

from .helpers import run_until_idle, scripted


def _config() -> SessionConfig:
    return SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS, State.PROCESS),
                         sampling=SamplingParams(max_new_tokens=4))


def test_the_pool_shrinks_back_when_sessions_leave(tiny) -> None:
    engine = Engine(tiny, EngineConfig(initial_blocks=16, max_blocks=1024))
    stay = engine.open_session(_config())
    stay.push_slice("hello")
    run_until_idle(engine)
    crowd = [engine.open_session(_config()) for _ in range(12)]
    for i, s in enumerate(crowd):
        s.push_slice(f"question number {i} about the weather")
    run_until_idle(engine)
    grown = engine.kv.num_blocks
    assert grown >= 64  # the crowd needed a bigger pool
    for s in crowd:
        engine.close_session(s.id)
    run_until_idle(engine)
    assert engine.kv.num_blocks == 16 and engine.kv.k[0].shape[0] == 16 * engine.kv.block_size
    stay.push_slice("and one more thing")  # the session that stayed is intact in the smaller pool
    assert any(isinstance(e, ev.ResponseDone) for e in run_until_idle(engine))


def test_the_pool_keeps_blocks_still_in_use(tiny) -> None:
    engine = Engine(tiny, EngineConfig(initial_blocks=16, max_blocks=1024))
    sessions = [engine.open_session(_config()) for _ in range(8)]
    for s in sessions:
        s.push_slice("tell me something")
    run_until_idle(engine)
    grown = engine.kv.num_blocks
    last = sessions[-1]  # joined last: it holds blocks in the upper half of the grown pool
    assert max(b for seq in last._live() for b in seq.blocks) >= grown // 2
    for s in sessions[:-1]:
        engine.close_session(s.id)
    run_until_idle(engine)
    assert engine.kv.num_blocks == grown  # halving would cut blocks still in use
    last.push_slice("and now?")
    assert any(isinstance(e, ev.ResponseDone) for e in run_until_idle(engine))

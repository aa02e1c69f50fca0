"""Admission: a tick's token budget spreads long prefills over ticks exactly; the KV check refuses a session
that cannot fit and leaves the others alone; slices over the limit are refused and the session goes on."""

from __future__ import annotations

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine
from duo.engine.plan import whole

from .helpers import full_tokens, reference_logits, rel_err, run_until_idle, scripted

LONG = " ".join(f"item {i} is on the list" for i in range(36))  # 278 tokens: fits the tiny model's window


def _cfg(*states: State, tokens: int = 6) -> SessionConfig:
    return SessionConfig(forecast_tokens=1, thresholds=scripted(*states),
                         sampling=SamplingParams(max_new_tokens=tokens))


def test_a_long_slice_is_spread_over_ticks_and_replies_keep_their_pace(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_tick_tokens=64))
    talker = engine.open_session(SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS),
                                               sampling=SamplingParams(max_new_tokens=200, ignore_eos=True)))
    talker.push_slice("tell me a story")
    for _ in range(3):
        engine.step()
    assert talker.reply is not None
    reader = engine.open_session(_cfg(State.INCOMPLETE))
    reader.push_slice(LONG)
    before, ticks = talker.reply.detok.num_tokens, 0
    while reader.input is None or reader.input.probs is None:
        engine.step()
        ticks += 1
        assert engine.last_tick.tokens <= 64 and ticks < 100
    assert ticks >= 5  # hundreds of tokens could not go in one tick
    assert talker.reply.detok.num_tokens - before == ticks  # one reply token every tick all along
    seq = reader.input.seq  # the KV written chunk by chunk is a prefill of the same tokens
    assert seq.num_cached == len(seq)
    seq.append([5])
    logits = engine.runner.run(whole([seq]))[0]
    assert rel_err(logits, reference_logits(tiny.model, full_tokens(seq))[-1]) < 1e-4


def test_a_slice_over_the_limit_is_refused_and_the_session_goes_on(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_slice_tokens=100))
    session = engine.open_session(_cfg(State.PROCESS))
    session.push_slice(LONG)
    events = run_until_idle(engine)
    errors = [e for e in events if isinstance(e, ev.Error)]
    assert [e.code for e in errors] == ["slice_too_long"] and not errors[0].fatal
    session.push_slice("what time is it")
    events = run_until_idle(engine)
    assert any(isinstance(e, ev.ResponseDone) for e in events)
    assert session.id in engine.sessions


def test_a_session_that_cannot_get_kv_is_closed_and_the_others_go_on(tiny) -> None:
    engine = Engine(tiny, EngineConfig(initial_blocks=24, max_blocks=24, block_size=16))
    small = engine.open_session(_cfg(State.PROCESS, State.PROCESS, tokens=4))
    small.push_slice("hi")
    run_until_idle(engine)
    free = engine.kv.num_free
    big = engine.open_session(_cfg(State.INCOMPLETE))
    big.push_slice(" ".join(["word"] * (16 * (free + 4))))  # more blocks than the pool has left
    events = run_until_idle(engine)
    fatal = [e for e in events if isinstance(e, ev.Error) and e.fatal]
    assert [(e.session_id, e.code) for e in fatal] == [(big.id, "kv_full")]
    assert any(isinstance(e, ev.SessionClosed) and e.session_id == big.id for e in events)
    assert big.id not in engine.sessions and engine.kv.num_free == free  # its blocks went back
    small.push_slice("and now")
    assert any(isinstance(e, ev.ResponseDone) for e in run_until_idle(engine))

"""The engine tick: one forward for every session and channel, each row exact against the channel alone."""

from __future__ import annotations

import pytest

from duo.engine import events as ev
from duo.engine.config import EngineConfig, Mode, SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine
from duo.engine.plan import whole

from .helpers import full_tokens, reference_logits, rel_err, run_until_idle, scripted

P, IG, N = State.PROCESS, State.IGNORE, State.INCOMPLETE


def _record(engine: Engine) -> list[tuple[list[tuple[list[int], int]], object]]:
    """Wrap the runner to keep, for every forward, what each row saw and the logits it produced."""
    calls = []
    run = engine.runner.run

    def recording(chunks, **kw):
        seen = [(full_tokens(c.seq)[: c.keys], c.n) for c in chunks]
        logits = run(chunks, **kw)
        calls.append((seen, logits.clone()))
        return logits

    engine.runner.run = recording
    return calls


def _busy_engine(backbone, mode: Mode = Mode.DUO) -> tuple[Engine, list]:
    """Sessions in every situation at once: replying, replying while judging an input, idle and judging."""
    engine = Engine(backbone, EngineConfig(mode=mode))
    cfg = lambda *s: SessionConfig(forecast_tokens=3, thresholds=scripted(*s),  # noqa: E731
                                   sampling=SamplingParams(max_new_tokens=40))
    replying = [engine.open_session(cfg(P, IG)) for _ in range(3)]
    for i, s in enumerate(replying):
        s.push_slice(["what is the capital of france", "name three colors", "tell me a story"][i])
    for _ in range(4):
        engine.step()
    replying[0].push_slice("did you feed the cat this morning")  # forecast alongside its own reply
    engine.open_session(cfg(N)).push_slice("so what I wanted to ask is")  # a fresh prefill
    return engine, replying


def test_combined_tick_rows_equal_each_channel_alone(backbone) -> None:
    engine, _ = _busy_engine(backbone)
    calls = _record(engine)
    for _ in range(3):
        engine.step()
    assert engine.last_tick.sessions >= 3
    rows = 0
    for seen, logits in calls:
        for (tokens, _), row in zip(seen, logits, strict=True):
            assert rel_err(row, reference_logits(backbone.model, tokens)[-1]) < 1e-4
            rows += 1
    assert rows >= 3 * 4  # outputs, a forecast and a prefill were all checked


def test_combined_tick_every_position_of_a_prefill(tiny) -> None:
    """All logits of a packed prefill, not only the last, match the channel run alone."""
    engine, _ = _busy_engine(tiny)
    engine.step()  # apply the new slices so their tokens are pending
    seqs = [seq for s in engine.sessions.values() for seq, _ in s.work()]
    seen = [(full_tokens(s), len(s.pending)) for s in seqs]
    logits = engine.runner.run(whole(seqs), all_logits=True)
    row = 0
    for tokens, n in seen:
        ref = reference_logits(tiny.model, tokens)[-n:]
        assert rel_err(logits[row : row + n], ref) < 1e-4
        row += n
    assert row == logits.shape[0]


@pytest.mark.parametrize("sessions", [1, 4, 9])
def test_one_forward_per_tick_whatever_the_sessions(tiny, sessions: int) -> None:
    engine = Engine(tiny, EngineConfig(max_tick_tokens=4096))  # every session's work fits one tick
    handles = [engine.open_session(SessionConfig(thresholds=scripted(P, IG), forecast_tokens=2,
                                                 sampling=SamplingParams(max_new_tokens=12)))
               for _ in range(sessions)]
    for h in handles:
        h.push_slice("hello there how are you")
    for tick in range(8):
        if tick == 3:
            for h in handles:
                h.push_slice("background chatter about the weather")
        before = engine.forward_passes
        engine.step()
        assert engine.forward_passes - before == 1
        assert engine.last_tick.sessions == sessions


def test_time_division_baseline_needs_two_passes(tiny) -> None:
    engine, _ = _busy_engine(tiny, Mode.TDM)
    calls = _record(engine)
    engine.step()
    assert engine.last_tick.forward_passes == 2
    for seen, logits in calls:  # the baseline is exact too
        for (tokens, _), row in zip(seen, logits, strict=True):
            assert rel_err(row, reference_logits(tiny.model, tokens)[-1]) < 1e-4


def test_sessions_join_and_leave_between_ticks_and_free_their_kv(tiny) -> None:
    engine = Engine(tiny)
    engine.step()
    free = engine.kv.num_free
    a = engine.open_session(SessionConfig(thresholds=scripted(P), sampling=SamplingParams(max_new_tokens=30)))
    a.push_slice("tell me about the moon")
    for _ in range(5):
        engine.step()
    b = engine.open_session(SessionConfig(thresholds=scripted(P), sampling=SamplingParams(max_new_tokens=5)))
    b.push_slice("hi")
    engine.step()
    assert set(engine.sessions) == {a.id, b.id}
    assert engine.kv.num_free < free
    engine.close_session(a.id)  # mid-reply
    out = engine.step()
    assert ev.SessionClosed(a.id) in out and a.id not in engine.sessions
    run_until_idle(engine)
    engine.close_session(b.id)
    engine.step()
    assert engine.kv.num_free == free and not engine.has_work()


def test_a_failing_session_ends_alone(tiny) -> None:
    class Poison(str):
        def strip(self, *args):  # a fault inside one session's own work
            raise RuntimeError("boom")

    engine = Engine(tiny)
    good = engine.open_session(SessionConfig(thresholds=scripted(P), sampling=SamplingParams(max_new_tokens=6)))
    bad = engine.open_session()
    good.push_slice("what time is it")
    bad.push_slice(Poison("hello"))
    out = run_until_idle(engine)
    fatal = [e for e in out if isinstance(e, ev.Error)]
    assert len(fatal) == 1 and fatal[0].session_id == bad.id and fatal[0].fatal
    assert bad.id not in engine.sessions
    assert any(isinstance(e, ev.ResponseDone) and e.session_id == good.id for e in out)


def test_session_limit(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_sessions=2))
    engine.open_session()
    engine.open_session()
    with pytest.raises(RuntimeError, match="session limit"):
        engine.open_session()


def _talk(engine: Engine) -> list[ev.Event]:
    """Two sessions asked at once, one interrupted by a barge-in mid-reply, one left to finish; all events."""
    config = SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS),
                           sampling=SamplingParams(max_new_tokens=12))
    a, b = engine.open_session(config, session_id="a"), engine.open_session(config, session_id="b")
    a.push_slice("tell me about the sea")
    b.push_slice("what time is it")
    out: list[ev.Event] = []
    for _ in range(8):
        out += engine.step()
    a.push_slice("no wait, about the mountains")
    return out + run_until_idle(engine)


def test_a_ticks_text_is_decoded_while_the_next_tick_runs(tiny) -> None:
    """Reply tokens become text in the next tick, once its forward is launched; handed to `emit` then, the
    events are the same, in the same order, as those an engine without `emit` returns."""
    plain = _talk(Engine(tiny))
    engine, log, got, emitted = Engine(tiny), [], [], []
    run, step = engine.runner.run, engine.step
    engine.runner.run = lambda chunks, **kw: log.append("forward") or run(chunks, **kw)  # type: ignore[method-assign]
    engine.text.emit = log.append  # each call: a list of events, in the tick's thread

    def stepped() -> list[ev.Event]:
        log.clear()
        events = step()
        for i, entry in enumerate(log):
            if isinstance(entry, list):
                assert all(isinstance(e, ev.TextDelta) for e in entry)
                assert "forward" in log[:i] or "forward" not in log  # after the launch, when there is one
                got.extend(entry)
                emitted.extend(entry)
        got.extend(events)
        return events

    engine.step = stepped  # type: ignore[method-assign]
    _talk(engine)

    def stream(events: list[ev.Event]) -> list[tuple]:
        return [(e.session_id, type(e).__name__, getattr(e, "delta", None), getattr(e, "text", None))
                for e in events]

    assert stream(got) == stream(plain)
    assert len(emitted) > 5 and len(emitted) >= sum(isinstance(e, ev.TextDelta) for e in got) // 2
    for done in (e for e in got if isinstance(e, ev.ResponseDone)):
        deltas = [e.delta for e in got if isinstance(e, ev.TextDelta) and e.response_id == done.response_id]
        assert "".join(deltas) == done.text

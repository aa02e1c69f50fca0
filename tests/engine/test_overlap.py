"""Overlapped ticks: launched before the previous tick's tokens reach the host, and exact all the same.

A tick planned a tick early guesses that every running reply goes on with the token still on the device.
Served as a serial engine is, it must give the same events; hit mid-flight by the owner's commands, it must
leave every cache a fresh prefill of what its sequence holds, and give every block back.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.kv_cache import KVCache
from duo.engine.llm_engine import Engine
from duo.engine.model_runner import ModelRunner
from duo.engine.plan import Chunk, exact_shape, plan_tick, whole
from duo.engine.sequence import Sequence
from duo.engine.session import Session

from .helpers import (
    assert_fresh_cache,
    full_tokens,
    greedy_reference,
    reference_logits,
    rel_err,
    run_until_idle,
    scripted,
)

P, IG, N = State.PROCESS, State.IGNORE, State.INCOMPLETE


def _config(*states: State, k: int = 1, n: int = 16, **kw) -> SessionConfig:
    return SessionConfig(forecast_tokens=k, thresholds=scripted(*states), sampling=SamplingParams(max_new_tokens=n),
                         **kw)


def _summary(events: list[ev.Event]) -> dict[str, list[tuple]]:
    """What each client sees, in order, without the ids drawn at random and the cut of the text into deltas."""
    out: dict[str, list[tuple]] = {}
    for e in events:
        if isinstance(e, ev.ResponseDone):
            out.setdefault(e.session_id, []).append(("done", e.status, e.text, e.num_tokens))
        elif isinstance(e, ev.StateDecided):
            out.setdefault(e.session_id, []).append(("state", e.state, e.held))
        elif not isinstance(e, ev.TextDelta):
            out.setdefault(e.session_id, []).append((type(e).__name__,))
    return out


def _conversations(engine: Engine) -> tuple[dict[str, list[tuple]], dict[str, str]]:
    """Three sessions through replies, an ignored and an incomplete slice, a second reply and the close."""
    sessions = [engine.open_session(_config(P, IG, N, P, k=k, n=n), session_id=f"s{i}")
                for i, (k, n) in enumerate([(1, 24), (3, 12), (1, 40)])]
    events: list[ev.Event] = []
    for words in (["hello", "what is the capital of france?", "name three colors."], ["the dog barked"] * 3,
                  ["and then"] * 3, ["tell me a joke"] * 3):
        for s, text in zip(sessions, words, strict=True):
            s.push_slice(text)
        events += run_until_idle(engine)
    for s in sessions:
        engine.close_session(s.id)
    events += run_until_idle(engine)
    text = {s.id: "".join(e.delta for e in events if isinstance(e, ev.TextDelta) and e.session_id == s.id)
            for s in sessions}  # each session's streamed text (how sessions' deltas interleave may differ)
    return _summary(events), text


def test_overlapped_ticks_give_the_serial_engines_events(backbone) -> None:
    serial = Engine(backbone, EngineConfig(overlap_ticks=False))
    overlapped = Engine(backbone, EngineConfig(overlap_ticks=True))
    free = overlapped.kv.num_free
    expected, text = _conversations(serial)
    assert _conversations(overlapped) == (expected, text)
    assert overlapped.forward_passes > 0 and not overlapped.in_flight
    assert overlapped.kv.num_free == free  # every speculative block went back with its session
    assert sum(1 for events in expected.values() for e in events if e[0] == "done") == 6


def test_a_reply_that_stops_on_the_token_it_was_fed_is_cut_back_exactly(tiny) -> None:
    """The next tick already ran the stop token (the guess): the close that follows it is prefilled over it."""
    probe = Engine(tiny, EngineConfig(overlap_ticks=False))
    s = probe.open_session(_config(P, n=12))
    s.push_slice("what is the capital of france")
    run_until_idle(probe)
    said = s.closed[-1].seq.tokens[s.closed[-1].start : s.closed[-1].end]
    at = next(i for i in range(3, len(said)) if said[i] not in said[:i])
    close = s.framing.assistant_close
    assert said[at] != close[0]  # its KV differs from the close's
    engine = Engine(dataclasses.replace(tiny, stop_ids=tiny.stop_ids | {said[at]}), EngineConfig(overlap_ticks=True))
    s = engine.open_session(_config(P, n=12))
    s.push_slice("what is the capital of france")
    done = next(e for e in run_until_idle(engine) if isinstance(e, ev.ResponseDone))
    assert done.status is ev.ResponseStatus.COMPLETED and done.num_tokens == at
    reply = s.closed[-1]
    assert reply.seq.tokens[reply.start :] == [*said[:at], *close]
    assert_fresh_cache(tiny.model, engine, s.last)


def test_a_fed_token_is_read_from_the_device(tiny) -> None:
    """A chunk whose token is still on the device runs as if the host had it: same logits."""
    kv = KVCache.for_model(tiny.model, block_size=16, num_blocks=64, max_blocks=64)
    runner = ModelRunner(tiny.model, kv)
    rng = np.random.default_rng(1)
    reply, other = Sequence(kv, rng.integers(10, 400, 15).tolist()), Sequence(kv, rng.integers(10, 400, 7).tolist())
    runner.run(whole([reply, other]))
    other.append([77])
    chunks = [Chunk(other, 1), Chunk(reply, 1, fed=2)]
    plan = plan_tick(chunks, exact_shape(chunks))
    assert plan.ids[plan.row_last[plan.rows[1]]] == 0  # a placeholder: the device writes it
    assert plan.fed_at.tolist() == [plan.row_last[plan.rows[1]]] and plan.fed_from.tolist() == [2]
    logits = runner.run(chunks, feed=torch.tensor([5.0, 6.0, 123.0]))
    reply.append([123])  # what the host learns of the token a tick later
    for row, seq in zip(logits, (other, reply), strict=True):
        assert rel_err(row, reference_logits(tiny.model, full_tokens(seq))[-1]) < 1e-4
    with pytest.raises(ValueError, match="previous tick"):
        runner.run([Chunk(reply, 1, fed=0)])


def _in_flight(engine: Engine, session: Session, tokens: int) -> None:
    """Step until the reply has `tokens` tokens and its next tick is in flight."""
    for _ in range(200):
        engine.step()
        if session.reply is not None and session.reply.detok.num_tokens >= tokens:
            assert engine.in_flight
            return
    raise AssertionError("the reply never got that far")


COMMANDS = ["cancel", "barge_in", "respond", "truncate", "withdraw", "close", "replace"]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_that_hit_a_tick_in_flight_leave_the_cache_exact(tiny, command: str) -> None:
    engine = Engine(tiny, EngineConfig(overlap_ticks=True))
    free = engine.kv.num_free
    s = engine.open_session(_config(P, P, P, n=30, speculate=True), session_id="a")
    bystander = engine.open_session(_config(P, P, P, n=30), session_id="b")  # replies all along, untouched
    bystander.push_slice("tell me about the history of rome")
    s.push_slice("what is the capital of france")
    if command == "truncate":  # a reply ended, and the next one is running
        first = next(e for e in run_until_idle(engine) if isinstance(e, ev.ResponseDone) and e.session_id == "a")
        bystander.push_slice("go on")
        s.push_slice("and of spain?")
    elif command == "withdraw":  # a reply started before the speaker's pause
        s.push_slice("and of spain", final=False)
    _in_flight(engine, s, 4)
    out: list[ev.Event] = []
    if command == "cancel":
        s.cancel()
    elif command == "barge_in":
        s.push_slice("wait, what about spain?")
    elif command == "respond":
        s.respond()
    elif command == "truncate":
        s.truncate(first.response_id, len(first.text) // 2)
    elif command == "withdraw":
        s.withdraw()
    elif command == "close":
        engine.close_session(s.id)
    else:
        s = engine.replace_session(s.id, _config(P, n=30))
    out += run_until_idle(engine)
    assert [e for e in out if isinstance(e, ev.Error)] == []
    live = [x for x in (s, bystander) if engine.sessions.get(x.id) is x]
    assert bystander in live and (s in live) == (command != "close")
    for x in live:
        for seq in x._live():
            assert seq.num_cached == len(seq)
            assert_fresh_cache(tiny.model, engine, seq)
        x.push_slice("one more question")  # the next reply continues the context as generate() would
    run_until_idle(engine)
    for x in live:
        reply = x.closed[-1]
        context = full_tokens(reply.seq)[: reply.seq.base + reply.start]
        expected = greedy_reference(tiny.model, context, 30, engine.vocab.stop_ids)
        assert reply.seq.tokens[reply.start : reply.end] == expected
        engine.close_session(x.id)
    run_until_idle(engine)
    assert engine.kv.num_free == free

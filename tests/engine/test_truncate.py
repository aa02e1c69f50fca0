"""`Session.truncate` after a barge-in: the context keeps only what the user heard, and stays exact.

The truncated reply may already have been followed by the barge-in's input channel or by a new reply. Both
saw the cut tokens, so the session re-attaches them to the cut turn and prefills them again: the cache then
equals a fresh prefill of the shortened conversation, and the new reply continues as `generate()` would.
"""

from __future__ import annotations

import pytest
import torch

from duo.engine import events as ev
from duo.engine.config import SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine
from duo.engine.session import Session

from .helpers import assert_fresh_cache, full_tokens, greedy_reference, reference_logits, run_until_idle, scripted

P, IG, N = State.PROCESS, State.IGNORE, State.INCOMPLETE
QUESTION, BARGE_IN = "tell me about the history of rome", "what about spain?"


def _config(*states: State, k: int = 1, n: int = 12) -> SessionConfig:
    return SessionConfig(forecast_tokens=k, thresholds=scripted(*states), sampling=SamplingParams(max_new_tokens=n))


def _done(events: list[ev.Event]) -> list[ev.ResponseDone]:
    return [e for e in events if isinstance(e, ev.ResponseDone)]


def _heard(s: Session, reply_id: str) -> tuple[list[int], list[int]]:
    """The reply's tokens the context keeps, and all it had before the cut."""
    reply = next(r for r in s.closed if r.id == reply_id)
    return reply.seq.tokens[reply.start : reply.end], reply.seq.tokens[reply.start :]


def _turn(s: Session, user: str, reply: list[int]) -> list[int]:
    f = s.framing
    return f.user_open + f.slice_ids(user, True) + f.user_close_assistant_open + reply + f.assistant_close


@pytest.mark.parametrize("barge_in", ["after_the_reply_ended", "while_it_was_generating"])
def test_truncate_after_barge_in_reprefills_only_what_follows_the_cut(tiny, barge_in: str) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, P, n=16))
    s.push_slice(QUESTION)
    if barge_in == "after_the_reply_ended":  # its audio still plays when the user talks over it
        first = _done(run_until_idle(engine))[0]
    else:
        for _ in range(10):
            engine.step()
    s.push_slice(BARGE_IN)
    out = []
    for _ in range(4):  # promoted; the new reply has begun
        out += engine.step()
    first = _done(out)[0] if barge_in == "while_it_was_generating" else first
    assert s.reply is not None and s.reply.detok.num_tokens and s.last.parent is s.closed[-1].seq
    before, _ = _heard(s, first.response_id)

    s.truncate(first.response_id, len(first.text) // 3)
    engine.step()
    kept, _ = _heard(s, first.response_id)
    assert 0 < len(kept) < len(before) and kept == before[: len(kept)]
    assert len(s.vocab.tokenizer.decode(kept, skip_special_tokens=True).strip()) <= len(first.text) // 3
    f = s.framing
    second = s.reply.seq.tokens[s.reply.start :]
    assert full_tokens(s.last) == [*f.system, *_turn(s, QUESTION, kept), *f.user_open,
                                   *f.slice_ids(BARGE_IN, True), *f.user_close_assistant_open, *second]
    assert s.turns[1]["content"] == s.vocab.tokenizer.decode(kept, skip_special_tokens=True).strip()
    assert_fresh_cache(tiny.model, engine, s.last)


def test_new_reply_continues_from_the_truncated_context(embedded) -> None:
    engine = Engine(embedded)
    s = engine.open_session(_config(P, P, n=10))
    s.push_slice(QUESTION)
    first = _done(run_until_idle(engine))[0]
    s.push_slice(BARGE_IN)
    for _ in range(4):
        engine.step()
    assert s.reply is not None
    s.truncate(first.response_id, len(first.text) // 2)
    engine.step()  # the cut applies; the prefill of what follows it gives the next token
    second = s.reply
    before = second.seq.tokens[second.start : -1]  # chosen over the old context, already streamed
    context = full_tokens(s.last)[: s.last.base + second.start]
    out = run_until_idle(engine)
    done = next(e for e in _done(out) if e.response_id == second.id)
    expected = greedy_reference(embedded.model, context + before, 10 - len(before), embedded.stop_ids)
    generated = second.seq.tokens[second.start : second.end]
    assert generated == before + expected
    assert done.num_tokens == len(generated)
    kept, whole = _heard(s, first.response_id)
    heard = embedded.tokenizer.decode(kept, skip_special_tokens=True).strip()
    assert heard and len(kept) < len(whole) and s.turns[1]["content"] == heard


@pytest.mark.parametrize("fork", ["after_the_close", "while_it_was_generating"])
def test_truncate_while_the_barge_in_is_being_judged(tiny, fork: str) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, N, IG, P, k=3, n=24))
    s.push_slice(QUESTION)
    if fork == "after_the_close":
        run_until_idle(engine)
        s.push_slice(BARGE_IN, final=False)
        engine.step()  # the slice is prefilled and the forecast has begun
    else:
        for _ in range(6):
            engine.step()
        s.push_slice(BARGE_IN, final=False)
        engine.step()
        s.cancel()  # the client stopped the reply before DUO decided on the barge-in
        engine.step()
    first = s.closed[-1]
    assert s.input is not None and s.input.forecast and s.reply is None
    _, whole = _heard(s, first.id)
    s.truncate(first.id, len(s.vocab.tokenizer.decode(whole, skip_special_tokens=True).strip()) // 2)
    decided = next(e for e in run_until_idle(engine) if isinstance(e, ev.StateDecided))
    assert decided.state is N
    f = s.framing
    kept, _ = _heard(s, first.id)
    assert len(kept) < len(whole)
    assert full_tokens(s.input.seq) == [*f.system, *_turn(s, QUESTION, kept), *f.user_open,
                                        *f.slice_ids(BARGE_IN, True)]  # one close, after what was heard
    assert_fresh_cache(tiny.model, engine, s.input.seq)
    ref = reference_logits(tiny.model, [*full_tokens(s.input.seq), engine.vocab.prediction_id])[-1]
    probs = ref[list(engine.vocab.state_ids.values())].softmax(-1)  # the forecast read the shortened context
    assert torch.allclose(torch.tensor(list(decided.probs.values())), probs, atol=1e-5)

    s.push_slice("and then he left", final=True)  # ignored: the cut turn stays closed
    run_until_idle(engine)
    assert s.input is None
    s.push_slice("so what about spain?")
    run_until_idle(engine)
    assert s.reply is None and s.last.parent is first.seq
    assert full_tokens(s.last)[: len(f.system) + len(_turn(s, QUESTION, kept))] == [
        *f.system, *_turn(s, QUESTION, kept)]
    assert_fresh_cache(tiny.model, engine, s.last)


def test_truncate_leaves_unknown_or_uncut_replies_alone(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, k=1, n=6))
    s.push_slice(QUESTION)
    done = _done(run_until_idle(engine))[0]
    tokens, turns = list(s.last.tokens), list(s.turns)
    s.truncate("resp_unknown", 0)
    s.truncate(done.response_id, len(done.text) + 5)  # heard it all
    run_until_idle(engine)
    assert s.last.tokens == tokens and s.turns == turns

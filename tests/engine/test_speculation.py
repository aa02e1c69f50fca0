"""Partial transcripts and speculative replies are exact: what they leave in the cache is a fresh prefill."""

from __future__ import annotations

import torch

from duo.engine import events as ev
from duo.engine.config import SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine

from .helpers import full_tokens, reference_logits, run_until_idle, scripted

P, N = State.PROCESS, State.INCOMPLETE


def _config(*states: State, n: int = 6, **kw) -> SessionConfig:
    return SessionConfig(forecast_tokens=1, thresholds=scripted(*states), sampling=SamplingParams(max_new_tokens=n),
                         **kw)


def _assert_cache_is_a_fresh_prefill(engine: Engine, backbone, seq, n: int) -> None:
    """The pool's keys and values of `seq`'s first `n` own tokens equal a plain forward over what it sees."""
    tokens = full_tokens(seq)[: seq.base + n]
    with torch.inference_mode():
        out = backbone.model(input_ids=torch.tensor([tokens]), use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    slots = seq.slots(0, n)
    for layer in range(len(engine.kv.k)):
        fresh = cache.layers[layer]
        for pool, ref in ((engine.kv.k[layer], fresh.keys), (engine.kv.v[layer], fresh.values)):
            assert torch.allclose(pool[slots].transpose(0, 1), ref[0, :, seq.base :], rtol=1e-4, atol=1e-5)


def test_partials_replace_the_provisional_tail_exactly(backbone) -> None:
    engine = Engine(backbone)
    s = engine.open_session(_config(N, N, N, N, N))
    s.push_slice("what is the capital", final=False)  # a settled 2 s slice
    run_until_idle(engine)
    settled = s.input.kept
    s.push_slice("of fra", final=False, partial=True)
    run_until_idle(engine)
    assert s.input.texts == ["what is the capital", "of fra"] and s.input.provisional
    s.push_slice("of france and", final=False, partial=True)  # replaces "of fra", the settled words stay cached
    engine.step()
    inp = s.input
    assert inp.texts == ["what is the capital", "of france and"] and inp.tail == settled
    run_until_idle(engine)
    s.push_slice("of france", final=True)  # the final slice replaces the last partial
    run_until_idle(engine)
    fresh = engine.open_session(_config(N, N))
    fresh.push_slice("what is the capital", final=False)
    fresh.push_slice("of france", final=True)
    run_until_idle(engine)
    assert full_tokens(inp.seq)[: inp.seq.base + inp.kept] == full_tokens(fresh.input.seq)[
        : fresh.input.seq.base + fresh.input.kept]
    assert inp.texts == ["what is the capital", "of france"] and not inp.provisional
    _assert_cache_is_a_fresh_prefill(engine, backbone, inp.seq, inp.kept)
    judged = [*full_tokens(inp.seq)[: inp.seq.base + inp.kept], engine.vocab.prediction_id]
    ref = reference_logits(backbone.model, judged)[-1]
    probs = ref[list(engine.vocab.state_ids.values())].softmax(-1)
    assert torch.allclose(torch.tensor(list(inp.probs.values())), probs, atol=1e-5)


def test_a_final_slice_equal_to_the_partial_settles_it_and_keeps_its_judgement(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, n=4))  # one scripted `process`: a second judgement would be `incomplete`
    s.push_slice("set a timer for ten minutes", final=False, partial=True)
    out = run_until_idle(engine)
    assert [e.held for e in out if isinstance(e, ev.StateDecided)] == [True] and s.reply is None
    s.push_slice("set a timer for ten minutes", final=True)
    out = engine.step()
    assert isinstance(out[0], ev.ResponseStarted) and not out[0].speculative  # no new forecast was needed


def test_a_withdrawn_speculative_reply_leaves_the_words_as_if_never_answered(backbone) -> None:
    engine = Engine(backbone)
    s = engine.open_session(_config(P, N, N, n=8, speculate=True))
    before = engine.kv.num_free
    s.push_slice("what is the capital", final=False, partial=True)
    out = run_until_idle(engine)
    started = next(e for e in out if isinstance(e, ev.ResponseStarted))
    assert started.speculative and [e.held for e in out if isinstance(e, ev.StateDecided)] == [True]
    assert s.turns[-1]["role"] == "assistant"  # the short reply even ended before the user went on
    s.withdraw()  # the newest promotion's reply, named or not
    out = engine.step()
    done = next(e for e in out if isinstance(e, ev.ResponseDone))
    assert done.status is ev.ResponseStatus.WITHDRAWN and done.num_tokens > 0
    assert s.turns == [] and s.reply is None and s.input is not None
    s.push_slice("what is the capital of france", final=True)  # the slice goes on: it replaces the partial
    run_until_idle(engine)
    inp = s.input
    assert inp is not None and inp.texts == ["what is the capital of france"]
    fresh = engine.open_session(_config(N, n=8))
    fresh.push_slice("what is the capital of france", final=True)
    run_until_idle(engine)
    assert full_tokens(inp.seq)[: inp.seq.base + inp.kept] == full_tokens(fresh.input.seq)[
        : fresh.input.seq.base + fresh.input.kept]
    _assert_cache_is_a_fresh_prefill(engine, backbone, inp.seq, inp.kept)
    s.close()
    fresh.close()
    run_until_idle(engine)
    assert engine.kv.num_free >= before  # nothing of the withdrawn reply is left holding blocks


def test_withdraw_refuses_anything_but_the_newest_promotion(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, n=4))
    s.withdraw()  # nothing was promoted: nothing happens
    assert run_until_idle(engine) == []
    s.push_slice("hello there")
    out = run_until_idle(engine)
    rid = next(e for e in out if isinstance(e, ev.ResponseStarted)).response_id
    s.truncate(rid, 2)  # anything after the turn settles it
    s.withdraw(rid)
    out = run_until_idle(engine)
    assert [e.code for e in out if isinstance(e, ev.Error)] == ["not_withdrawn"] and s.turns[-1]["role"] == "assistant"

"""The DUO transitions are exact: rollback, discard and promotion leave what a fresh run would have."""

from __future__ import annotations

import torch

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.llm_engine import Engine

from .helpers import full_tokens, greedy_reference, reference_logits, run_until_idle, scripted

P, IG, N = State.PROCESS, State.IGNORE, State.INCOMPLETE


def _config(*states: State, k: int = 2, n: int = 16, **kw) -> SessionConfig:
    return SessionConfig(forecast_tokens=k, thresholds=scripted(*states), sampling=SamplingParams(max_new_tokens=n),
                         **kw)


def _reply(events: list[ev.Event]) -> list[ev.ResponseDone]:
    return [e for e in events if isinstance(e, ev.ResponseDone)]


def test_incomplete_rollback_leaves_the_cache_of_a_fresh_prefill(backbone) -> None:
    engine = Engine(backbone)
    s = engine.open_session(_config(N, N, k=3))
    s.push_slice("what is the capital", final=False)
    out = run_until_idle(engine)
    assert [e.state for e in out if isinstance(e, ev.StateDecided)] == [N]
    inp = s.input
    assert inp is not None and len(inp.seq) == inp.kept and inp.seq.num_cached == inp.kept
    tokens = full_tokens(inp.seq)
    with torch.inference_mode():
        out = backbone.model(input_ids=torch.tensor([tokens]), use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]  # renamed in transformers 5.2x
    slots = inp.seq.slots(0, inp.kept)
    for layer in range(len(engine.kv.k)):
        fresh = cache.layers[layer]
        for pool, ref in ((engine.kv.k[layer], fresh.keys), (engine.kv.v[layer], fresh.values)):
            ours = pool[slots].transpose(0, 1)
            expected = ref[0, :, inp.seq.base :]
            assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-5)
    # the next slice continues the same channel, and the decision after it reads exact logits
    s.push_slice("of france")
    engine.step()
    assert s.input is not None and s.input.texts == ["what is the capital", "of france"]
    ref = reference_logits(backbone.model, full_tokens(s.input.seq)[: s.input.seq.base + s.input.kept + 1])[-1]
    probs = ref[list(engine.vocab.state_ids.values())].softmax(-1)
    assert torch.allclose(torch.tensor(list(s.input.probs.values())), probs, atol=1e-5)


def test_ignore_leaves_the_reply_token_identical(backbone) -> None:
    def run(background: bool) -> tuple[str, int]:
        engine = Engine(backbone)
        s = engine.open_session(_config(P, IG, n=12))
        s.push_slice("tell me something about the sea")
        for _ in range(4):
            engine.step()
        free = engine.kv.num_free
        if background:
            s.push_slice("and then he said the meeting moved to thursday")
        out = run_until_idle(engine)
        if background:
            assert [e.state for e in out if isinstance(e, ev.StateDecided)] == [IG]
            assert s.input is None
        done = _reply(out)[-1]
        assert done.status is ev.ResponseStatus.LENGTH
        return done.text, free - engine.kv.num_free

    text, _ = run(background=False)
    text_with_background, _ = run(background=True)
    assert text_with_background == text


def test_process_answers_like_greedy_generation_and_interruption_is_reported(embedded) -> None:
    engine = Engine(embedded)
    s = engine.open_session(_config(P, P, n=24))
    f = s.framing
    s.push_slice("tell me about the history of rome")
    for _ in range(6):
        engine.step()
    assert s.reply is not None
    heard = s.reply.seq.tokens[s.reply.start :]  # what the input channel forks from: the reply so far
    s.push_slice("no wait, what about spain?")
    out = run_until_idle(engine)
    first, second = _reply(out)
    assert first.status is ev.ResponseStatus.INTERRUPTED
    deltas = "".join(e.delta for e in out if isinstance(e, ev.TextDelta) and e.response_id == first.response_id)
    assert first.text.endswith(deltas) and 0 < first.num_tokens < 24

    stop = embedded.stop_ids
    question = f.slice_ids("tell me about the history of rome", True)
    turn1 = f.system + f.user_open + question + f.user_close_assistant_open
    expected1 = greedy_reference(embedded.model, turn1, first.num_tokens, stop)
    assert embedded.tokenizer.decode(expected1, skip_special_tokens=True).strip() == first.text.strip()
    assert expected1[: len(heard)] == heard

    turn2 = (turn1 + heard + f.assistant_close + f.user_open + f.slice_ids("no wait, what about spain?", True)
             + f.user_close_assistant_open)
    expected2 = greedy_reference(embedded.model, turn2, 24, stop)
    assert second.text.strip() == embedded.tokenizer.decode(expected2, skip_special_tokens=True).strip()


def test_batch_invariance(embedded) -> None:
    def run(others: int) -> str:
        engine = Engine(embedded)
        me = engine.open_session(_config(P, IG, n=10))
        crowd = [engine.open_session(_config(P, P, n=6)) for _ in range(others)]
        me.push_slice("how do plants grow?")
        for i, c in enumerate(crowd):
            c.push_slice(f"count to {i + 2} please")
        for _ in range(100):  # however many ticks admission takes to get there (more with a crowd)
            if me.reply is not None:
                break
            engine.step()
        me.push_slice("the bus was late again today")  # ignored background speech, over the reply
        for c in crowd[::2]:
            c.push_slice("actually tell me a joke")  # barge-ins in the neighbours
        out = run_until_idle(engine)
        return next(e.text for e in _reply(out) if e.session_id == me.id)

    alone = run(0)
    assert alone and run(3) == alone and run(8) == alone


def test_process_waits_for_the_pause_unless_told_otherwise(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, k=1, n=4))
    s.push_slice("set a timer for ten minutes", final=False)  # cut by the 2 s limit: still speaking
    out = run_until_idle(engine)
    decided = [e for e in out if isinstance(e, ev.StateDecided)]
    assert decided[0].state is P and decided[0].held and s.reply is None
    s.pause()
    out = run_until_idle(engine)
    assert isinstance(out[0], ev.ResponseStarted) and _reply(out)

    eager = engine.open_session(_config(P, k=1, n=4, process_waits_for_pause=False))
    eager.push_slice("set a timer for ten minutes", final=False)
    out = run_until_idle(engine)
    assert any(isinstance(e, ev.ResponseStarted) for e in out)


def test_thresholds_not_argmax_decide(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(SessionConfig(forecast_tokens=1))
    s.push_slice("play some music")
    decided = next(e for e in run_until_idle(engine) if isinstance(e, ev.StateDecided))
    assert abs(sum(decided.probs.values()) - 1) < 1e-5
    best = max(decided.probs.values())
    strict = engine.open_session(SessionConfig(forecast_tokens=1, thresholds=type(s.config.thresholds)(
        process=best + 0.01, ignore=best + 0.01)))
    strict.push_slice("play some music")
    again = next(e for e in run_until_idle(engine) if isinstance(e, ev.StateDecided))
    assert again.probs == decided.probs and again.state is N  # too weak to act on: wait


def test_context_window_trims_oldest_turns_and_keeps_instructions(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_context=260))
    s = engine.open_session(_config(*[P] * 12, k=1, n=8))
    trimmed = []
    for i in range(12):
        s.push_slice(f"question number {i} about something else entirely")
        trimmed += [e for e in run_until_idle(engine) if isinstance(e, ev.ContextTrimmed)]
        assert s.last.total_len <= 260
    assert trimmed and all(e.dropped_turns >= 1 and e.tokens_after < e.tokens_before for e in trimmed)
    assert full_tokens(s.last)[: len(s.framing.system)] == s.framing.system


def test_bad_and_empty_input(tiny) -> None:
    engine = Engine(tiny, EngineConfig(max_context=256))
    s = engine.open_session(_config(P, k=1, n=4))
    s.push_slice("")
    s.push_slice("   ", final=False)
    assert engine.step() == [] and s.input is None
    s.push_slice(42)  # type: ignore[arg-type]
    s.push_slice("word " * 400)
    errors = [e for e in engine.step() if isinstance(e, ev.Error)]
    assert [e.code for e in errors] == ["invalid_input", "slice_too_long"] and not any(e.fatal for e in errors)
    s.push_slice("still here?")
    assert any(isinstance(e, ev.ResponseDone) for e in run_until_idle(engine))


def test_cancel_closes_the_turn(tiny) -> None:
    engine = Engine(tiny)
    s = engine.open_session(_config(P, k=1, n=50))
    s.push_slice("tell me a long story")
    for _ in range(4):
        engine.step()
    s.cancel()
    done = _reply(run_until_idle(engine))
    assert done[0].status is ev.ResponseStatus.CANCELLED
    assert s.last.tokens[-len(s.framing.assistant_close):] == s.framing.assistant_close


def test_seeded_sampling_is_reproducible(tiny) -> None:
    def run(seed: int) -> str:
        engine = Engine(tiny)
        s = engine.open_session(SessionConfig(forecast_tokens=1, thresholds=scripted(P),
                                              sampling=SamplingParams(temperature=1.0, top_p=0.9, seed=seed,
                                                                      max_new_tokens=12)))
        s.push_slice("say something")
        return _reply(run_until_idle(engine))[0].text

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_unjudged_slices_wait_for_an_explicit_respond(tiny) -> None:
    """Pause-based turn taking and client-committed turns: no forecast, the caller says when to answer."""
    engine = Engine(tiny)
    s = engine.open_session(_config(k=1, n=4))
    s.push_slice("what is the weather", judge=False)
    s.push_slice("like tomorrow", judge=False)
    assert not any(isinstance(e, ev.StateDecided) for e in run_until_idle(engine))
    s.respond("req_1")
    out = run_until_idle(engine)
    assert out[0] == ev.ResponseStarted(s.id, out[0].response_id, "what is the weather like tomorrow", "req_1")
    assert _reply(out)[0].status is ev.ResponseStatus.LENGTH


def test_respond_with_no_new_input_speaks_next(tiny) -> None:
    """The assistant may speak first, or again: an empty user turn, then a reply, as in a fresh prefill."""
    engine = Engine(tiny)
    s = engine.open_session(_config(k=1, n=4))
    s.respond()
    first = run_until_idle(engine)
    assert first[0] == ev.ResponseStarted(s.id, first[0].response_id, "")
    assert s.turns[0] == {"role": "user", "content": ""} and s.turns[1]["role"] == "assistant"
    s.respond()
    assert isinstance(run_until_idle(engine)[0], ev.ResponseStarted)
    assert [t["role"] for t in s.turns] == ["user", "assistant"] * 2


def test_truncate_keeps_only_what_was_heard(embedded) -> None:
    engine = Engine(embedded)
    s = engine.open_session(_config(P, P, k=1, n=24))
    s.push_slice("tell me about the history of rome")
    done = _reply(run_until_idle(engine))[0]
    heard = done.text[: len(done.text) // 2]
    s.truncate(done.response_id, len(heard))
    run_until_idle(engine)
    kept = s.turns[-1]["content"]
    assert kept and heard.strip().startswith(kept) and len(kept) < len(done.text.strip())
    assert s.last.tokens[-len(s.framing.assistant_close):] == s.framing.assistant_close
    tail = embedded.tokenizer.decode(s.last.tokens[s.closed[-1].start :], skip_special_tokens=True)
    assert tail.strip() == kept
    s.push_slice("go on")  # the next turn continues from the cut reply
    assert any(isinstance(e, ev.ResponseStarted) for e in run_until_idle(engine))

"""Outcomes and figures computed on hand-written event timelines whose answers are known."""

from __future__ import annotations

from typing import Any

import pytest

from duo.evaluation import metrics


def seg(role: str, start: float, end: float, layer: bool = False) -> dict[str, Any]:
    return {"role": role, "start": start, "end": end, "label": role, "layer": layer}


def ev(t: float, kind: str, **body: Any) -> dict[str, Any]:
    return {"t": t, "type": kind, **body}


def rec(expect: str, segments: list, events: list, mode: str = "duo", **kw: Any) -> dict[str, Any]:
    return {"id": "x", "expect": expect, "mode": mode, "speed": 1.0, "within_s": 5.0, "output": "audio",
            "segments": segments, "events": events, "end": max([e["t"] for e in events] + [0.0]) + 1, **kw}


def created(t: float, rid: str) -> dict[str, Any]:
    return ev(t, "response.created", response_id=rid, status="in_progress")


def token(t: float, rid: str, delta: str = "ok") -> dict[str, Any]:
    return ev(t, "response.output_audio_transcript.delta", response_id=rid, delta=delta)


def audio(t: float, rid: str, ms: float) -> dict[str, Any]:
    return ev(t, "response.output_audio.delta", response_id=rid, audio_ms=ms)


def done(t: float, rid: str, status: str = "completed", reason: str | None = None) -> dict[str, Any]:
    return ev(t, "response.done", response_id=rid, status=status, reason=reason)


def heard(start: float, stop: float, transcribed: float) -> list[dict[str, Any]]:
    return [ev(start + 0.1, "input_audio_buffer.speech_started", audio_start_ms=start * 1000),
            ev(stop + 0.5, "input_audio_buffer.speech_stopped", audio_end_ms=stop * 1000),
            ev(transcribed, "conversation.item.input_audio_transcription.completed", transcript="...")]


def long_reply(rid: str, at: float, chunks: int = 10, ms: float = 500, gen_done: float | None = None) -> list:
    """A reply created at `at`, first token 0.3 s later, audio chunks of `ms` arriving every 0.1 s from +0.5 s."""
    out = [created(at, rid), token(at + 0.3, rid)] + [audio(at + 0.5 + 0.1 * i, rid, ms) for i in range(chunks)]
    return out + ([done(gen_done, rid)] if gen_done is not None else [])


QUERY = [seg("query", 0.5, 2.0)]


def test_respond_answered_with_both_latencies() -> None:
    events = [*heard(0.5, 2.0, 3.0), ev(3.2, "duo.input.state", state="process"), created(3.2, "r1"),
              token(3.5, "r1"), audio(3.9, "r1", 100), audio(4.0, "r1", 100), done(4.1, "r1")]
    out = metrics.evaluate(rec("respond", QUERY, events))
    assert out["passed"] is True and out["reason"] == "answered"
    assert out["latency_token_s"] == pytest.approx(1.5) and out["latency_audio_s"] == pytest.approx(1.9)
    assert out["transcript_s"] == pytest.approx(1.0)  # the query's end (2.0) to its words (3.0)


def test_the_transcript_is_timed_from_the_query_end_not_an_earlier_utterance() -> None:
    """A wait query's first half is transcribed mid-query; the figure is the words after its end."""
    events = [*heard(0.5, 1.2, 1.8), *heard(2.5, 3.4, 3.9), created(4.0, "r1"), token(4.2, "r1")]
    out = metrics.evaluate(rec("wait", [seg("query", 0.5, 1.2), seg("query", 2.5, 3.4)], events))
    assert out["transcript_s"] == pytest.approx(0.5)
    assert "transcript_s" not in metrics.evaluate(rec("respond", QUERY, heard(0.5, 2.0, 1.9)))


def test_respond_too_late_too_early_or_never() -> None:
    late = metrics.evaluate(rec("respond", QUERY, [*heard(0.5, 2.0, 7.5), created(8.0, "r1"), token(8.2, "r1")]))
    assert late["passed"] is False and late["reason"] == "answer came 6.00 s after the query"
    assert late["latency_token_s"] == pytest.approx(6.2)  # measured even when too late
    early = metrics.evaluate(rec("respond", QUERY, [created(0.2, "r0"), *heard(0.5, 2.0, 2.8), created(3.0, "r1")]))
    assert early["passed"] is False and early["reason"] == "a reply to earlier speech started at 0.20 s"
    assert metrics.evaluate(rec("respond", QUERY, heard(0.5, 2.0, 3.0)))["reason"] == "no reply"


def test_a_late_reply_to_speech_before_the_query_is_not_its_answer() -> None:
    # people talk 0-4 s (recognized at 5.5 s, after the query began), then the query 5.0-6.5 s
    segments = [seg("background", 0.0, 4.0), seg("query", 5.0, 6.5)]
    events = sorted([*heard(0.0, 4.0, 5.5), *heard(5.0, 6.5, 8.0)], key=lambda e: e["t"])
    out = metrics.evaluate(rec("respond", segments, [*events, created(5.8, "r0"), created(8.3, "r1"),
                                                     token(8.5, "r1")]))
    assert out["passed"] is False and "earlier speech" in out["reason"]
    assert out["answer_id"] == "r1" and out["latency_token_s"] == pytest.approx(2.0)


def test_no_response_takeover() -> None:
    bg = [seg("background", 0.3, 6.0)]
    quiet = metrics.evaluate(rec("no_response", bg, heard(0.3, 6.0, 7.0)))
    assert quiet["passed"] is True and quiet["takeover"] is False
    taken = metrics.evaluate(rec("no_response", bg, [*heard(0.3, 6.0, 7.0), created(7.5, "r1")]))
    assert taken["passed"] is False and taken["takeover"] is True and "7.50" in taken["reason"]


WAIT = [seg("query", 0.5, 1.5), seg("pause", 1.5, 3.0), seg("query", 3.0, 4.0)]


def test_wait_reply_to_the_first_half_is_a_takeover_even_when_it_comes_late() -> None:
    # slow recognition: the first half is transcribed at 4.5 s, after the whole query ended (4.0 s); the reply
    # to it (4.6 s) still answers an unfinished query; the second half is transcribed at 5.5 s
    events = [*heard(0.5, 1.5, 4.5), *heard(3.0, 4.0, 5.5)]
    events.sort(key=lambda e: e["t"])
    run = rec("wait", WAIT, [*events, created(4.6, "r1"), created(5.6, "r2"), token(5.9, "r2")], mode="server_vad")
    assert metrics.final_utterance(run, 4.0) == 1
    assert [metrics.trigger_utterance(run, r) for r in metrics.replies(run)] == [0, 1]
    stale = metrics.evaluate(run)
    assert stale["passed"] is False and stale["takeover"] is True and stale["answer_id"] == "r2"
    assert stale["latency_token_s"] == pytest.approx(1.9)
    patient = metrics.evaluate(rec("wait", WAIT, [*events, created(5.7, "r1"), token(6.0, "r1")]))
    assert patient["passed"] is True and patient["takeover"] is False and patient["answered"] is True
    untranscribed = rec("wait", WAIT, [*heard(0.5, 1.5, 2.5), ev(3.1, "input_audio_buffer.speech_started",
                                                                 audio_start_ms=3000), created(6.0, "r1")])
    assert metrics.evaluate(untranscribed)["takeover"] is True  # the second half was never recognized


def test_wait_duo_reply_is_attributed_by_the_slice_it_judged() -> None:
    # DUO judges the first half's last slice "to?" only after the second half was transcribed: the reply still
    # answers the first half (the decision names its slice), and the second half is ignored on its own
    def slice_(t: float, text: str, final: bool) -> list[dict[str, Any]]:
        out = [ev(t, "conversation.item.input_audio_transcription.delta", delta=text)]
        return out + ([ev(t, "conversation.item.input_audio_transcription.completed", transcript="...")] if final
                      else [])

    events = [ev(0.6, "input_audio_buffer.speech_started", audio_start_ms=500),
              *slice_(2.6, "can you tell me how to get", False), ev(2.7, "duo.input.state", state="incomplete",
                                                                   slice_text="can you tell me how to get"),
              ev(3.1, "input_audio_buffer.speech_started", audio_start_ms=3000),
              *slice_(3.4, "to?", True), *slice_(5.3, "the train station", True),
              ev(5.4, "duo.input.state", state="process", slice_text="to?"), created(5.4, "r1"),
              ev(6.0, "duo.input.state", state="ignore", slice_text="the train station")]
    run = rec("wait", WAIT, events)
    assert metrics.trigger_utterance(run, metrics.replies(run)[0]) == 0
    out = metrics.evaluate(run)
    assert out["takeover"] is True and out["answered"] is False and "latency_token_s" not in out


def test_duo_reply_is_attributed_by_the_item_it_judged() -> None:
    # background speech judged `ignore` leaves no transcript; the query's onset went to that item, and its words
    # came in an item opened mid-speech: the reply still answers the query (transcript counting said "earlier")
    start = "input_audio_buffer.speech_started"
    events = [ev(0.1, start, audio_start_ms=0, item_id="bg"), ev(3.2, "duo.input.state", state="ignore", item_id="bg"),
              ev(4.9, start, audio_start_ms=4800, item_id="bg2"),
              ev(5.7, "duo.input.state", state="ignore", item_id="bg2"),
              ev(8.3, "conversation.item.input_audio_transcription.completed", transcript="...", item_id="q"),
              ev(8.8, "duo.input.state", state="process", slice_text="Canada?", item_id="q"), created(8.8, "r1")]
    run = rec("respond", [seg("background", 0.0, 3.8), seg("query", 4.8, 6.5)], events)
    assert metrics.trigger_utterance(run, metrics.replies(run)[0]) == 1 == metrics.final_utterance(run, 6.5)
    assert metrics.evaluate(run)["passed"] is True
    # speech that resumes after a pause joins the same item: the reply answers its newest start, the second half
    resumed = [ev(0.6, start, audio_start_ms=500, item_id="u"), ev(3.1, start, audio_start_ms=3000, item_id="u"),
               ev(5.4, "duo.input.state", state="process", slice_text="to?", item_id="u"), created(5.4, "r1")]
    run = rec("wait", WAIT, resumed)
    assert metrics.trigger_utterance(run, metrics.replies(run)[0]) == 1
    assert metrics.evaluate(run)["takeover"] is False


def test_a_judgement_made_before_its_item_opened_names_the_next_item() -> None:
    # "tell me a joke" (0.5-1.44 s): its first partial "I'll be" is judged `ignore` and its item dropped; the
    # partial "Tell me a joke." is judged `process` before the server opens the item the words go to (the
    # judgement has no item), and that item's own start, pre-roll included, comes with the final words
    start, delta = "input_audio_buffer.speech_started", "conversation.item.input_audio_transcription.delta"
    events = [ev(0.645, start, audio_start_ms=544, item_id="a"),
              ev(1.118, "duo.input.state", state="ignore", slice_text="I'll be", item_id="a"),
              ev(1.592, "duo.input.state", state="process", slice_text="Tell me a joke."),
              ev(1.804, start, audio_start_ms=344, item_id="b"), ev(1.804, delta, delta="Tell me a joke.", item_id="b"),
              ev(1.804, "conversation.item.input_audio_transcription.completed", transcript="Tell me a joke.",
                 item_id="b"), created(1.806, "r1"), token(1.807, "r1")]
    run = rec("respond", [seg("query", 0.5, 1.44)], events)
    assert metrics.trigger_utterance(run, metrics.replies(run)[0]) == 1 == metrics.final_utterance(run, 1.44)
    assert metrics.evaluate(run)["passed"] is True


INTERRUPT = [seg("query", 0.5, 2.0), seg("interrupt", 5.0, 6.5)]


def test_interrupt_by_cancellation_and_by_a_new_response() -> None:
    # audio of r1 plays from 3.5 s for 5 s (to 8.5 s); the new query is spoken 5.0-6.5 s
    cancelled = [*long_reply("r1", 3.0), done(7.2, "r1", "cancelled", "turn_detected"), created(7.2, "r2"),
                 token(7.4, "r2")]
    out = metrics.evaluate(rec("interrupt", INTERRUPT, cancelled))
    assert out["passed"] is True and out["barge_in_s"] == pytest.approx(2.2)
    assert out["answer_id"] == "r2" and out["latency_token_s"] == pytest.approx(0.9)
    # generation already finished (done at 4.0) but playback runs to 8.5: the new response.created stops it
    playing = [*long_reply("r1", 3.0, gen_done=4.0), created(7.0, "r2"), token(7.1, "r2")]
    out = metrics.evaluate(rec("interrupt", INTERRUPT, playing))
    assert out["passed"] is True and out["barge_in_s"] == pytest.approx(2.0)


def test_an_interruption_is_timed_from_its_end_and_its_duck_from_its_onset() -> None:
    # r1 plays 3.5-8.5 s, ducked 0.12 s into the interruption (5.0-6.5 s), cancelled at 6.8, r2 audio at 7.3
    events = [*long_reply("r1", 3.0), ev(5.12, "duo.output_audio.duck", response_id="r1", audio_start_ms=1620),
              done(6.8, "r1", "cancelled", "turn_detected"), created(6.8, "r2"), token(6.9, "r2"),
              audio(7.3, "r2", 500)]
    out = metrics.evaluate(rec("interrupt", INTERRUPT, events))
    assert out["passed"] is True and out["duck_s"] == pytest.approx(0.12)
    assert out["barge_in_s"] == pytest.approx(1.8) and out["silenced_s"] == pytest.approx(0.3)
    assert out["latency_audio_s"] == pytest.approx(0.8)  # the end of the interrupting words to r2's audio
    sooner = [*long_reply("r1", 3.0), done(6.2, "r1", "cancelled", "turn_detected"), created(6.2, "r2")]
    early = metrics.evaluate(rec("interrupt", INTERRUPT, sooner))
    assert early["silenced_s"] == 0.0 and "duck_s" not in early  # silenced before the words ended; no duck event
    summary = metrics.summarize([{**o, "expect": "interrupt"} for o in (out, early)])
    assert summary["silenced_s"]["n"] == 2 and summary["duck_s"]["p50"] == pytest.approx(0.12)
    assert summary["interrupt_answer_audio_s"]["n"] == 1 and summary["interrupt_answer_audio_s"]["p50"] == 0.8


def test_server_vad_stops_at_the_speech_it_hears() -> None:
    events = [*long_reply("r1", 3.0, gen_done=4.0), ev(5.1, "input_audio_buffer.speech_started", audio_start_ms=5000),
              created(7.5, "r2")]
    assert metrics.evaluate(rec("interrupt", INTERRUPT, events, mode="server_vad"))["barge_in_s"] == \
        pytest.approx(0.1)
    # the same events under duo: speech alone stops nothing, the new response does
    assert metrics.evaluate(rec("interrupt", INTERRUPT, events, mode="duo"))["barge_in_s"] == pytest.approx(2.5)


def test_interrupt_not_measurable_or_ignored() -> None:
    over = [created(3.0, "r1"), audio(3.5, "r1", 1000), done(3.6, "r1")]  # plays 3.5-4.5, before the interruption
    out = metrics.evaluate(rec("interrupt", INTERRUPT, over))
    assert out["passed"] is None and "no reply was playing" in out["reason"]
    ignored = metrics.evaluate(rec("interrupt", INTERRUPT, long_reply("r1", 3.0, gen_done=4.0)))
    assert ignored["passed"] is False and ignored["reason"] == "kept talking over the interruption"
    short = long_reply("r1", 3.0, chunks=4, gen_done=4.0)  # 2 s of audio from 3.5: ends at 5.8, mid-interruption
    assert metrics.evaluate(rec("interrupt", INTERRUPT, short))["passed"] is None


NO_INTERRUPT = [seg("query", 0.5, 2.0), seg("background", 5.0, 8.0), seg("background", 5.0, 8.0, layer=True)]


def test_no_interrupt_kept_talking_or_falsely_stopped() -> None:
    reply = long_reply("r1", 3.0, chunks=20, gen_done=4.0)  # plays 3.5-13.5
    background = [ev(5.1, "input_audio_buffer.speech_started", audio_start_ms=5000),
                  ev(8.5, "input_audio_buffer.speech_stopped", audio_end_ms=8000)]
    kept = metrics.evaluate(rec("no_interrupt", NO_INTERRUPT, reply + background))
    assert kept["passed"] is True and kept["false_interruption"] is False and kept["takeover"] is False
    vad = metrics.evaluate(rec("no_interrupt", NO_INTERRUPT, reply + background, mode="server_vad"))
    assert vad["passed"] is False and vad["false_interruption"] is True
    answered = metrics.evaluate(rec("no_interrupt", NO_INTERRUPT, reply + background + [created(9.0, "r2")]))
    assert answered["false_interruption"] is True and answered["takeover"] is True


def test_playback_follows_the_speed_of_the_clock() -> None:
    r = metrics.replies(rec("respond", QUERY, long_reply("r1", 3.0, chunks=2, gen_done=4.0), speed=2.0))[0]
    assert r.audio_end == pytest.approx(3.5 + 2 * 0.5 * 2)  # 1 s of audio lasts 2 s on a clock twice as fast
    assert r.natural_end == pytest.approx(5.5)


def test_text_replies_last_as_long_as_reading_them_out() -> None:
    events = [created(3.0, "r1"), token(3.2, "r1", "x" * 150), token(3.3, "r1", "y" * 15), done(3.4, "r1")]
    r = rec("no_interrupt", NO_INTERRUPT, events, output="text")
    assert metrics.replies(r)[0].audio_end == pytest.approx(3.2 + 165 / metrics.TEXT_CHARS_PER_S)
    assert metrics.evaluate(r)["passed"] is True  # still being read out when the background starts at 5 s
    r["output"] = "audio"  # the same text with speech asked for and none sent: over at 3.4 s
    assert metrics.evaluate(r)["passed"] is None


def test_settled_waits_for_the_reply_to_be_heard() -> None:
    r = rec("respond", QUERY, [*heard(0.5, 2.0, 2.9), created(3.0, "r1"), token(3.2, "r1")])
    assert not metrics.settled(r, 4.0)
    assert not metrics.settled(r, 20.0)  # created in time, its audio not yet heard: keep listening
    r["events"].append(audio(3.6, "r1", 100))
    assert metrics.settled(r, 4.0)
    assert metrics.settled(rec("respond", QUERY, []), 7.0) and not metrics.settled(rec("respond", QUERY, []), 6.9)
    text = rec("respond", QUERY, [*heard(0.5, 2.0, 2.9), created(3.0, "r1"), token(3.2, "r1")], output="text")
    assert metrics.settled(text, 3.3)
    bg = rec("no_response", [seg("background", 0.3, 6.0)], [])
    assert not metrics.settled(bg, 10.9) and metrics.settled(bg, 11.0)


def test_summary_rates_and_percentiles() -> None:
    assert metrics.stats([4.0, 1.0, 3.0, 2.0]) == {"n": 4, "p50": 2.5, "p90": 3.7, "mean": 2.5, "min": 1.0,
                                                   "max": 4.0}
    assert metrics.stats([]) == {"n": 0}
    outcomes = [
        {"expect": "respond", "passed": True, "latency_token_s": 1.0, "latency_audio_s": 2.0},
        {"expect": "respond", "passed": False, "latency_token_s": 3.0},
        {"expect": "no_response", "passed": False, "takeover": True},
        {"expect": "no_response", "passed": True, "takeover": False},
        {"expect": "no_response", "passed": True, "takeover": False},
        {"expect": "no_response", "passed": True, "takeover": False},
        {"expect": "wait", "passed": False, "takeover": True},
        {"expect": "wait", "passed": None, "reason": "error: ConnectionError: server refused the session"},
        {"expect": "no_response", "passed": None, "reason": "error: TimeoutError"},
        {"expect": "interrupt", "passed": None},
        {"expect": "interrupt", "passed": True, "barge_in_s": 0.5},
        {"expect": "no_interrupt", "passed": False, "false_interruption": True, "takeover": False},
        {"expect": "no_interrupt", "passed": True, "false_interruption": False, "takeover": False},
    ]
    s = metrics.summarize(outcomes)
    assert s["scenarios"] == 13 and s["measured"] == 10 and s["passed"] == 6 and s["pass_rate"] == 0.6
    assert s["takeover_background"] == {"n": 4, "rate": 0.25}
    assert s["takeover_pause"] == {"n": 1, "rate": 1.0}
    assert s["response_rate"] == {"n": 2, "rate": 0.5}
    assert s["interrupt_success"] == {"n": 1, "rate": 1.0}
    assert s["false_interruption"] == {"n": 2, "rate": 0.5}
    assert s["latency_token_s"]["n"] == 2 and s["latency_token_s"]["p50"] == 2.0
    assert s["latency_audio_s"]["n"] == 1 and s["barge_in_s"]["p50"] == 0.5
    assert s["per_expectation"]["interrupt"] == {"n": 2, "measured": 1, "passed": 1}

"""Conversations through a real server on loopback, with a real websockets client."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from duo.server.inprocess import InProcessServer

from .helpers import connect, live_server

ANSWER = {"process_threshold": 0.0}  # the untuned model cannot forecast: force the state through the real path
IGNORE = {"process_threshold": 1.0, "ignore_threshold": 0.0}
UNFINISHED = {"process_threshold": 1.0, "ignore_threshold": 1.0}  # every slice below both: `incomplete`


@pytest.fixture(scope="module")
def server(embedded) -> Iterator[InProcessServer]:
    with live_server(embedded, tts="espeak-ng") as live:
        yield live


async def test_text_conversation(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(**ANSWER)
    await c.say("what is the capital of france?")
    state = await c.until("duo.input.state")
    assert state["state"] == "process" and set(state["probs"]) == {"process", "ignore", "incomplete"}
    created = await c.until("response.created")
    done = await c.until("response.done")
    rid = created["response"]["id"]
    deltas = [e["delta"] for e in c.events if e["type"] == "response.output_text.delta" and e["response_id"] == rid]
    assert done["response"]["status"] == "completed" and "Paris" in "".join(deltas)
    assert done["response"]["output"][0]["content"][0]["text"] == "".join(deltas)
    await c.ws.close()


async def test_background_speech_gets_no_response(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(**IGNORE)
    await c.say("and then she said the meeting moved to thursday")
    state = await c.until("duo.input.state")
    assert state["state"] == "ignore"
    with pytest.raises(TimeoutError):
        await c.until("response.created", timeout=2)
    await c.ws.close()


async def test_unfinished_request_is_answered_after_a_silence(server: InProcessServer) -> None:
    """An utterance judged `incomplete` waits for more; if the user stays silent it is answered once, after
    `incomplete_timeout_ms`; more words before then restart the wait; `null` waits however long."""
    c = await connect(server.url)
    await c.configure(incomplete_timeout_ms=1500, **UNFINISHED)
    await c.say("remind me to call my mother at")
    assert (await c.until("duo.input.state"))["state"] == "incomplete"
    await asyncio.sleep(0.5)
    await c.send("duo.input.slice", text="six tomorrow", final=True)  # the user goes on: the wait restarts
    assert (await c.until("duo.input.state"))["state"] == "incomplete"
    decided = loop_time()
    created = await c.until("response.created", timeout=30)
    assert loop_time() - decided >= 1.0  # after the silence (1.5 s from the judgement; delivery may lag)
    await c.until("response.done")
    with pytest.raises(TimeoutError):
        await c.until("response.created", timeout=2)
    assert sum(e["type"] == "response.created" for e in c.events) == 1, created
    await c.ws.close()

    c = await connect(server.url)
    await c.configure(incomplete_timeout_ms=None, **UNFINISHED)
    await c.say("remind me to call my mother at")
    assert (await c.until("duo.input.state"))["state"] == "incomplete"
    with pytest.raises(TimeoutError):
        await c.until("response.created", timeout=3)
    await c.ws.close()


async def test_unfinished_speech_over_a_reply_is_not_answered_by_the_timeout(server: InProcessServer) -> None:
    """Speech that began while duo was replying and never became `process` is left alone: most often it is
    someone else talking, and the reply runs on as it did while it was heard."""
    c = await connect(server.url)
    await c.configure(max_tokens=400, incomplete_timeout_ms=300, **UNFINISHED)
    await c.say("tell me a long story about a dragon")
    await c.until("duo.input.state")
    await c.send("response.create")
    first = (await c.until("response.created"))["response"]["id"]
    await c.until("response.output_text.delta")
    await c.say("and then she told me that the")
    assert (await c.until("duo.input.state"))["state"] == "incomplete"
    with pytest.raises(TimeoutError):  # the timeout (300 ms) would have answered it by now
        await c.until("response.created", timeout=2)
    ended = [e["response"] for e in c.events if e["type"] == "response.done" and e["response"]["id"] == first]
    assert all(r["status"] != "cancelled" for r in ended), ended  # it runs on, or ended on its own
    await c.ws.close()


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_barge_in_cancels_and_answers(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(max_tokens=200, **ANSWER)
    await c.say("tell me a long story about a dragon")
    first = (await c.until("response.created"))["response"]["id"]
    await c.until("response.output_text.delta")
    await c.say("stop, what time is it?")
    cancelled = await c.until("response.done")
    assert cancelled["response"]["id"] == first and cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
    second = await c.until("response.created")
    assert second["response"]["id"] != first
    assert (await c.until("response.done"))["response"]["status"] in ("completed", "incomplete")
    await c.ws.close()


def _context(session) -> list[int]:
    """The tokens the model sees now: the conversation chain of an engine session, root first."""
    tokens: list[int] = []
    for seq, visible in session.last.ancestry():
        tokens += seq.tokens[:visible]
    return tokens + list(session.last.tokens)


async def test_truncate_after_a_barge_in_cuts_what_the_model_sees(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.send("session.update", session={"output_modalities": ["audio"], "max_output_tokens": 24,
                                            "audio": {"input": {"turn_detection": {"type": "duo", **ANSWER,
                                                                                   "forecast_tokens": 1}}}})
    await c.until("session.updated")
    await c.say("tell me about the history of rome")
    item = (await c.until("response.output_item.added"))["item"]["id"]
    done = await c.until("response.done")  # all its audio is out; the client is still playing it
    assert done["response"]["status"] in ("completed", "incomplete")
    said = done["response"]["output"][0]["content"][0]["transcript"]
    played_ms = sum(len(base64.b64decode(e["delta"])) for e in c.events
                    if e["type"] == "response.output_audio.delta" and e["item_id"] == item) // 48
    barge_ins = server.state.metrics.registry.get_sample_value("duo_barge_in_latency_seconds_count")
    await c.say("what did you just say?")  # talked over the playback
    await c.until("response.created")
    assert server.state.metrics.registry.get_sample_value("duo_barge_in_latency_seconds_count") == barge_ins + 1
    await c.send("conversation.item.truncate", item_id=item, content_index=0, audio_end_ms=played_ms // 3)
    await c.until("conversation.item.truncated", item_id=item)

    conversation = next(s for s in server.state.sessions if s.id == c.events[0]["session"]["id"]).conversation
    engine_session = conversation.handle.session
    for _ in range(100):  # applied at the engine's next tick
        if engine_session.turns[1]["content"] != said.strip():
            break
        await asyncio.sleep(0.05)
    heard, said = engine_session.turns[1]["content"], said.strip()
    assert heard and len(heard) <= len(said) // 3 + 1 and said.startswith(heard)
    seen = engine_session.vocab.tokenizer.decode(_context(engine_session))
    pieces = engine_session.framing.pieces
    assert re.search(re.escape(heard) + r"\s*" + re.escape(pieces.assistant_close + pieces.user_open
                                                           + "what did you just say?"), seen)
    assert said[len(heard) :].strip() not in seen  # what was never played left the model's context
    await c.until("response.done")
    await c.ws.close()


def _speech_pcm24k(tmp_path, text: str) -> np.ndarray:
    """`text` spoken by espeak-ng as 24 kHz PCM16, then a second of silence (a pause)."""
    wav = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", "24000", "-e", "signed", "-b", "16", "-c", "1", "-"],
                         check=True, capture_output=True).stdout
    return np.concatenate([np.frombuffer(raw, dtype="<i2"), np.zeros(24_000, dtype="<i2")])


async def _stream(c, pcm: np.ndarray) -> None:
    step = 2400  # 100 ms
    for i in range(0, len(pcm), step):
        await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i : i + step].tobytes()).decode())
        await asyncio.sleep(0.02)


async def test_audio_conversation_from_synthesized_speech(server: InProcessServer, tmp_path) -> None:
    c = await connect(server.url)
    await c.configure(**ANSWER)
    await _stream(c, _speech_pcm24k(tmp_path, "what is the capital of france"))
    await c.until("duo.input.speech_started")  # what duo heard, at once (duo-aware clients)
    await c.until("duo.input.state", state="process")
    await c.until("input_audio_buffer.speech_started")  # the standard events: a turn for duo
    await c.until("input_audio_buffer.speech_stopped")
    transcript = await c.until("conversation.item.input_audio_transcription.completed")
    assert "capital of france" in transcript["transcript"].lower()
    await c.until("response.created")
    await c.ws.close()


async def test_server_vad_baseline_answers_at_the_pause_without_duo(server: InProcessServer, tmp_path) -> None:
    c = await connect(server.url)
    await c.send("session.update", session={"audio": {"input": {"turn_detection": {"type": "server_vad"}}},
                                            "max_output_tokens": 8})
    await c.until("session.updated")
    await _stream(c, _speech_pcm24k(tmp_path, "what is the capital of france"))
    await c.until("response.created")
    assert (await c.until("response.done"))["response"]["status"] in ("completed", "incomplete")
    assert not any(e["type"] == "duo.input.state" for e in c.events)
    await c.ws.close()


async def test_without_turn_detection_the_client_asks(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.send("session.update", session={"audio": {"input": {"turn_detection": None}}, "max_output_tokens": 6})
    assert (await c.until("session.updated"))["session"]["audio"]["input"]["turn_detection"] is None
    await c.say("what is the capital of france?")
    with pytest.raises(TimeoutError):
        await c.until("response.created", timeout=2)
    await c.send("response.create")
    await c.until("response.created")
    await c.until("response.done")
    assert not any(e["type"] == "duo.input.state" for e in c.events)
    await c.ws.close()


async def test_audio_output_streams_speech(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.send("session.update", session={"output_modalities": ["audio"], "max_output_tokens": 4,
                                            "audio": {"input": {"turn_detection": {"type": "duo", **ANSWER}}}})
    await c.until("session.updated")
    await c.say("say hello")
    created = await c.until("response.created")
    audio = await c.until("response.output_audio.delta")
    assert audio["response_id"] == created["response"]["id"] and len(base64.b64decode(audio["delta"])) > 0
    done = (await c.until("response.done"))["response"]  # once spoken, it reports why generation ended
    assert done["status"] == "incomplete" and done["status_details"]["reason"] == "max_output_tokens"
    assert any(e["type"] == "response.output_audio_transcript.delta" for e in c.events)
    await c.ws.close()


async def test_twenty_concurrent_sessions_stay_isolated(server: InProcessServer) -> None:
    async def one(i: int) -> tuple[str, set[str]]:
        c = await connect(server.url)
        await c.configure(max_tokens=6, **ANSWER)
        await c.say(f"what is {i} plus {i}?")
        done = await c.until("response.done", timeout=300)
        ids = {e["response"]["id"] for e in c.events if e["type"] == "response.created"}
        await c.ws.close()
        return done["response"]["id"], ids

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(rid in ids and len(ids) == 1 for rid, ids in results)
    assert len({rid for rid, _ in results}) == 20


async def test_long_instructions_never_stall_another_sessions_reply(server: InProcessServer) -> None:
    """12 KB of instructions (~3,000 tokens) are prefilled over many ticks under the per-tick token budget;
    meanwhile another session's question is answered within as many ticks as when the server is idle.
    Ticks, not seconds: the property holds on any machine, however busy."""
    engine = server.state.loop.engine
    canary = await connect(server.url)
    await canary.configure(**ANSWER)

    async def ticks_to_first_token(question: str) -> int:
        start = engine.ticks
        await canary.say(question)
        await canary.until("response.output_text.delta")
        ticks = engine.ticks - start
        await canary.until("response.done")
        return ticks

    idle = await ticks_to_first_token("what is two plus two?")
    rules = " ".join(f"Rule {i}: answer the user kindly and briefly." for i in range(300))
    big = await connect(server.url)
    start = engine.ticks
    await big.send("session.update", session={"instructions": rules,
                                              "audio": {"input": {"turn_detection": {"type": "duo", **ANSWER}}}})
    await big.until("session.updated")
    await big.say("hello")  # judged once the instructions are in
    busy = await ticks_to_first_token("what is the capital of italy?")
    await big.until("duo.input.state", timeout=600)
    prefill = engine.ticks - start
    assert prefill >= 3000 // engine.tick_tokens  # the instructions went in over many ticks ...
    print(f"ticks to the first token: idle {idle}, during the long prefill {busy}; prefill {prefill} ticks")
    assert busy <= idle + 2, (idle, busy, prefill)  # ... and the other session did not wait for them
    await canary.ws.close()
    await big.ws.close()


async def test_client_vanishing_mid_response_frees_its_kv(server: InProcessServer) -> None:
    engine = server.state.loop.engine
    for _ in range(100):  # earlier tests' sessions are gone
        if not engine.sessions and not engine.has_work():
            break
        await asyncio.sleep(0.1)
    free = engine.kv.num_free
    c = await connect(server.url)
    await c.configure(max_tokens=200, **ANSWER)
    await c.say("tell me everything about the ocean")
    await c.until("response.output_text.delta")
    await c.ws.close()
    for _ in range(100):
        if engine.kv.num_free == free and not engine.sessions:
            break
        await asyncio.sleep(0.1)
    assert engine.kv.num_free == free and not engine.sessions


@pytest.mark.parametrize("event, code", [
    ("{not json", "invalid_json"),
    ('{"type": "no.such.event"}', "unknown_event"),
    ('{"type": "input_audio_buffer.append"}', "invalid_event"),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_event"),
    ('{"type": "input_audio_buffer.append", "audio": "%%%notbase64"}', "invalid_audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AAE="}', "invalid_audio"),  # 2 bytes: fine; see below
    ('{"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 10}', "item_not_found"),
    ('{"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "duo", '
     '"slice_ms": 99}}}}}', "invalid_value"),
    ("[1, 2]", "invalid_event"),
    pytest.param('{"type": "session.update", "session": {"instructions": "' + "a " * 9000 + '"}}', "invalid_session",
                 id="instructions-beyond-the-window"),
])
async def test_bad_input_gets_an_error_and_the_session_goes_on(server: InProcessServer, event: str, code: str) -> None:
    if event.endswith('"AAE="}'):
        event = event.replace("AAE=", "AAEC")  # 3 bytes: not whole PCM16 samples
    c = await connect(server.url)
    await c.ws.send(event)
    error = await c.until("error")
    assert error["error"]["code"] == code and error["error"]["message"]
    await c.configure(max_tokens=3, **ANSWER)
    await c.say("hello")
    assert (await c.until("response.done"))["response"]["status"] in ("completed", "incomplete")
    await c.ws.close()


async def test_oversized_frame(server: InProcessServer) -> None:
    """Beyond `max_frame_bytes` the frame is refused from its header: close 1009 (the server goes on)."""
    c = await connect(server.url)
    big = base64.b64encode(b"\0" * (server.state.settings.max_frame_bytes + 10)).decode()
    await c.send("input_audio_buffer.append", audio=big)
    with pytest.raises(ConnectionClosed) as closed:
        await c.until("error")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    c = await connect(server.url)
    await c.send("input_audio_buffer.clear")
    await c.until("input_audio_buffer.cleared")
    await c.ws.close()




async def test_audio_far_ahead_of_real_time_is_refused(server: InProcessServer) -> None:
    c = await connect(server.url)
    burst = server.state.settings.audio_burst_s
    chunk = np.zeros(int(24_000 * (burst + 0.5)), dtype="<i2").tobytes()
    await c.send("input_audio_buffer.append", audio=base64.b64encode(chunk).decode())
    assert (await c.until("error"))["error"]["code"] == "rate_limited"
    await c.send("input_audio_buffer.append", audio=base64.b64encode(chunk[:4800]).decode())  # 100 ms: fine
    await c.send("input_audio_buffer.clear")
    await c.until("input_audio_buffer.cleared")
    assert [e["type"] for e in c.events].count("error") == 1
    await c.ws.close()


async def test_shipped_adapter_answers_queries_and_ignores_background_talk() -> None:
    """Real decisions with the default thresholds: no state is forced here."""
    from duo.engine.loader import load_backbone

    tuned = load_backbone(None, device="cpu")  # the embedded model with its shipped adapter
    with live_server(tuned) as live:
        c = await connect(live.url)
        await c.send("session.update", session={"max_output_tokens": 12,  # DUO's defaults, its events on
                                                "audio": {"input": {"turn_detection": {"type": "duo"}}}})
        await c.until("session.updated")
        await c.say("mark are you coming to the meeting at three")
        assert (await c.until("duo.input.state"))["state"] == "ignore"
        await c.say("set a timer for ten minutes")
        state = await c.until("duo.input.state")
        assert state["state"] == "process" and state["probs"]["process"] > 0.9
        await c.until("response.created")
        assert not [e for e in c.events if e["type"] == "response.created"][1:]  # only the query was answered
        await c.ws.close()

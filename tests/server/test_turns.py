"""Turn taking against the live server: early closes, held and withdrawn replies, partials, ducking.

Real speech (espeak-ng) and typed slices drive the real engine (embedded model). Audio is sent in steps and
the test waits for the server's own state between them, so what the slicer hears never races the judgement.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from duo.server.inprocess import InProcessServer

from .helpers import Client, connect, live_server

ANSWER = {"process_threshold": 0.0}  # the untuned model cannot forecast: force the state through the real path
IGNORE = {"process_threshold": 1.0, "ignore_threshold": 0.0}
UNFINISHED = {"process_threshold": 1.0, "ignore_threshold": 1.0}
RATE = 24_000


@pytest.fixture(scope="module")
def server(embedded) -> Iterator[InProcessServer]:
    with live_server(embedded, tts="espeak-ng") as live:
        yield live


def spoken(tmp_path, text: str) -> np.ndarray:
    """`text` spoken by espeak-ng as 24 kHz PCM16, its silent padding cut so the pauses are the test's own."""
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16", "-c", "1", "-"],
                         check=True, capture_output=True).stdout
    pcm = np.frombuffer(raw, dtype="<i2")
    loud = np.flatnonzero(np.abs(pcm) > 600)
    return pcm[loud[0] : loud[-1] + 1]


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype="<i2")


async def send_audio(c: Client, pcm: np.ndarray, step_ms: int = 100) -> None:
    step = RATE * step_ms // 1000
    for i in range(0, len(pcm), step):
        await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i : i + step].tobytes()).decode())
        await asyncio.sleep(0.02)


async def until(cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Wait for a condition on the server's state (it runs in its own thread)."""
    for _ in range(int(timeout / 0.05)):
        if value := cond():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def conversation_of(server: InProcessServer, c: Client) -> Any:
    sid = c.events[0]["session"]["id"]
    return next(s for s in server.state.sessions if s.id == sid).conversation


def metric(server: InProcessServer, name: str) -> float:
    return server.state.metrics.registry.get_sample_value(name) or 0.0


def mentions(events: list[dict[str, Any]], response_id: str) -> list[dict[str, Any]]:
    """Every event the client got that names `response_id`."""
    return [e for e in events if e.get("response_id") == response_id
            or (isinstance(e.get("response"), dict) and e["response"].get("id") == response_id)]


async def test_an_early_close_is_withdrawn_unheard_when_speech_resumes(server: InProcessServer, tmp_path) -> None:
    c = await connect(server.url)
    await c.configure(**ANSWER, early_pause_ms=200, pause_ms=1500, confirm_ms=1500, partial_ms=300,
                      incomplete_timeout_ms=None)
    conv = conversation_of(server, c)
    resumed = metric(server, "duo_early_closes_resumed_total")
    await send_audio(c, np.concatenate([spoken(tmp_path, "what is the capital"), silence(100)]))
    await c.until("duo.input.state", state="process")  # a partial judged: the short pause may end the words
    held = await until(lambda: conv.held.response_id if len(conv.held.events) > 2 else None, "a held reply")
    await send_audio(c, silence(600))  # past the short pause, well within the confirmation window
    await until(lambda: conv.turns.early_ms is not None, "the early close")
    assert not [e for e in c.events if e["type"] == "response.created"]  # nothing of it is out yet
    await send_audio(c, np.concatenate([spoken(tmp_path, "of france"), silence(2500)]))  # within the 1.5 s
    created = await c.until("response.created")
    done = await c.until("response.done")
    assert created["response"]["id"] != held and done["response"]["id"] == created["response"]["id"]
    assert mentions(c.events, held) == []  # not one event of the withdrawn reply reached the client
    assert metric(server, "duo_early_closes_resumed_total") == resumed + 1
    transcripts = [e["transcript"] for e in c.events
                   if e["type"] == "conversation.item.input_audio_transcription.completed"]
    heard = [e["text"] for e in c.events if e["type"] == "duo.input.transcript" and e["text"]]
    assert len(heard) >= 2 and transcripts == [" ".join(heard)]  # both utterances' words in one user item
    user_turns = [t["content"] for t in conv.handle.session.turns if t["role"] == "user"]
    assert user_turns == transcripts  # one turn for the model too: the words after the resume joined it
    await c.ws.close()


async def test_a_speculative_reply_is_discarded_when_the_user_goes_on(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(**ANSWER)
    await c.send("session.update", session={"output_modalities": ["audio"]})  # held replies are spoken ahead
    await c.until("session.updated")
    conv = conversation_of(server, c)
    voice = conv.responses.voice
    discarded, withdrawn = metric(server, "duo_speculative_tokens_discarded_total"), metric(
        server, "duo_withdrawn_replies_total")
    await c.send("duo.input.slice", text="what is the capital", final=False, partial=True)
    assert (await c.until("duo.input.state"))["held"]  # `process`, before the pause
    held = await until(lambda: conv.held.response_id if len(conv.held.events) > 3 else None, "a held reply")
    ahead = voice.held[held]  # its synthesis began when it was held
    await c.send("duo.input.slice", text="what is the capital of france", final=False, partial=True)
    await until(lambda: metric(server, "duo_withdrawn_replies_total") > withdrawn, "the withdrawal")
    await until(lambda: ahead.task.done(), "the withdrawn reply's synthesis cancelled")
    assert ahead.task.cancelled() and held not in voice.held
    assert metric(server, "duo_speculative_tokens_discarded_total") >= discarded + 3
    await c.until("duo.input.state")
    kept = await until(lambda: conv.held.response_id if len(conv.held.events) > 1 else None, "a second held reply")
    assert kept in voice.held  # spoken ahead too
    withdrawn = metric(server, "duo_withdrawn_replies_total")
    await c.send("duo.input.slice", text="what is the capital of france", final=True)  # the turn ends
    created = await c.until("response.created")
    await c.until("response.done")
    assert created["response"]["id"] == kept != held  # the reply to these very words goes out, as it stands
    assert metric(server, "duo_withdrawn_replies_total") == withdrawn and mentions(c.events, held) == []  # audio too
    assert sum(e["type"] == "response.created" for e in c.events) == 1
    kinds = [e["type"] for e in mentions(c.events, kept)]
    if "response.output_audio_transcript.delta" in kinds:  # it said something: spoken ahead, out after its start
        assert "response.output_audio.delta" in kinds and "response.output_audio.done" in kinds
        assert kinds.index("response.created") < kinds.index("response.output_audio.delta")
        assert kinds.index("response.output_audio.done") < kinds.index("response.done")
    assert [t for t in conv.handle.session.turns if t["role"] == "user"] == [
        {"role": "user", "content": "what is the capital of france"}]
    await c.ws.close()


async def speaking_a_story(server: InProcessServer, thresholds: dict[str, float]) -> tuple[Client, str]:
    """A client whose session (DUO with `thresholds`, partials on) has started speaking a long reply."""
    c = await connect(server.url)
    td = {"type": "duo", "forecast_tokens": 1, "partial_ms": 300, **thresholds}
    await c.send("session.update", session={"output_modalities": ["audio"], "max_output_tokens": 120,
                                            "audio": {"input": {"turn_detection": td}}})
    await c.until("session.updated")
    await c.add_text("tell me a long story about a dragon")
    await c.send("response.create")
    reply = (await c.until("response.created"))["response"]["id"]
    await c.until("response.output_audio.delta")
    return c, reply


async def test_speech_over_a_spoken_reply_ducks_it_and_ignore_restores_it(server: InProcessServer,
                                                                          tmp_path) -> None:
    ducks = metric(server, "duo_duck_latency_seconds_count")
    c, reply = await speaking_a_story(server, IGNORE)
    await send_audio(c, np.concatenate([spoken(tmp_path, "and then she said the meeting moved to thursday"),
                                        silence(1000)]))
    duck = await c.until("duo.output_audio.duck")
    assert duck["response_id"] == reply and duck["audio_start_ms"] >= 0
    assert (await c.until("duo.input.state"))["state"] == "ignore"
    restore = await c.until("duo.output_audio.restore")
    assert restore["reason"] == "ignore" and restore["response_id"] == reply
    done = await c.until("response.done", timeout=180)
    assert done["response"]["id"] == reply and done["response"]["status"] != "cancelled"  # it went on unbroken
    assert sum(e["type"] == "response.created" for e in c.events) == 1
    assert metric(server, "duo_duck_latency_seconds_count") == ducks + 1
    await c.ws.close()


def too_short_for_speech(sound: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The shortest start of `sound` that the server's own decoder and slicer, fed `lead` then it in 20 ms
    chunks, hear as an onset that never becomes speech (found with the real VAD, not assumed)."""
    import base64 as b64

    from duo.audio.decode import PcmStream
    from duo.audio.slicer import Slicer

    for ms in range(8, 200, 8):
        pcm, slicer, onset, started = PcmStream(RATE), Slicer(), False, False
        audio = np.concatenate([lead, sound[: RATE * ms // 1000], silence(600)])
        for i in range(0, len(audio), RATE // 50):
            events = slicer.push(pcm.push_base64(b64.b64encode(audio[i : i + RATE // 50].tobytes()).decode()))
            onset |= slicer.onset_s is not None
            started |= any(type(e).__name__ == "SpeechStarted" for e in events)
        if started:
            break
        if onset:
            return sound[: RATE * ms // 1000]
    raise AssertionError("no start of the sound is an onset too short to be speech")


async def test_a_sound_too_short_for_speech_ducks_the_reply_and_restores_it(server: InProcessServer,
                                                                            tmp_path) -> None:
    lead = silence(1000)
    blip = too_short_for_speech(spoken(tmp_path, "ah"), lead)
    c, reply = await speaking_a_story(server, IGNORE)
    await send_audio(c, np.concatenate([lead, blip, silence(600)]), step_ms=20)
    duck = await c.until("duo.output_audio.duck")
    restore = await c.until("duo.output_audio.restore")
    assert duck["response_id"] == reply and restore == {**restore, "reason": "not_speech", "response_id": reply}
    done = await c.until("response.done", timeout=180)
    assert done["response"]["id"] == reply and done["response"]["status"] != "cancelled"
    assert not [e for e in c.events if e["type"].endswith("speech_started")]
    await c.ws.close()


async def test_partials_leave_the_kv_of_a_fresh_prefill_of_the_final_words(server: InProcessServer,
                                                                          tmp_path) -> None:
    c = await connect(server.url)
    await c.configure(**UNFINISHED, partial_ms=300, incomplete_timeout_ms=None)
    conv = conversation_of(server, c)
    speech = spoken(tmp_path, "please remind me tomorrow morning to water the plants on the balcony")
    assert len(speech) > 2.5 * RATE  # more than one 2 s slice
    await send_audio(c, speech[: int(1.2 * RATE)])  # less than a slice: only a partial can be judged now
    await c.until("duo.input.state")
    assert not [e for e in c.events if e["type"] == "duo.input.transcript"]
    await send_audio(c, np.concatenate([speech[int(1.2 * RATE) :], silence(1500)]))
    await c.until("duo.input.transcript", final=True)
    session = conv.handle.session
    inp = await until(lambda: session.input if session.input is not None and not session.has_work()
                      and not session.input.judging and session.input.final else None, "the final judgement")
    words = [e["text"] for e in c.events if e["type"] == "duo.input.transcript" and e["text"]]
    framing = session.framing
    expected = list(framing.user_open)
    for i, text in enumerate(words):
        expected += framing.slice_ids(text, first=i == 0)
    assert not inp.provisional and inp.seq.tokens[: inp.kept] == expected  # exactly the final words
    tokens: list[int] = []
    for anc, n in inp.seq.ancestry():
        tokens += anc.tokens[:n]
    tokens += inp.seq.tokens[: inp.kept]
    with torch.inference_mode():
        out = server.state.backbone.model(input_ids=torch.tensor([tokens]), use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    kv, slots = server.state.loop.engine.kv, inp.seq.slots(0, inp.kept)
    for layer in range(len(kv.k)):
        fresh = cache.layers[layer]
        for pool, ref in ((kv.k[layer], fresh.keys), (kv.v[layer], fresh.values)):
            assert torch.allclose(pool[slots].transpose(0, 1), ref[0, :, inp.seq.base :], rtol=1e-4, atol=1e-5)
    await c.ws.close()


async def test_the_final_slice_takes_its_pause_partials_reading_without_a_decode(server: InProcessServer,
                                                                                  tmp_path) -> None:
    """The partial taken as the pause began heard every word: the slice the pause then closes is not decoded
    again (the recognizer's count stays), and its words are what the partial read."""
    c = await connect(server.url)
    await c.configure(**UNFINISHED, partial_ms=5000, pause_ms=1500, incomplete_timeout_ms=None)  # only at pauses
    decoded = metric(server, "duo_recognition_seconds_count")
    # one word: no dip inside it for a pause of its own to begin (and take a partial)
    await send_audio(c, np.concatenate([spoken(tmp_path, "lights"), silence(300)]))
    state = await c.until("duo.input.state")  # the pause began: its partial was recognized and judged
    assert metric(server, "duo_recognition_seconds_count") == decoded + 1
    await send_audio(c, silence(2000))  # the pause ends the utterance
    final = await c.until("duo.input.transcript", final=True)
    assert metric(server, "duo_recognition_seconds_count") == decoded + 1  # nothing more was decoded
    assert final["text"] == state["slice_text"] != ""
    await c.ws.close()


async def test_speech_judged_process_over_a_spoken_reply_stops_it_and_is_answered(server: InProcessServer,
                                                                                 tmp_path) -> None:
    silenced = metric(server, "duo_interruption_silence_seconds_count")
    first_audio = metric(server, "duo_first_audio_seconds_count")
    c, reply = await speaking_a_story(server, ANSWER)
    await send_audio(c, np.concatenate([spoken(tmp_path, "stop, what time is it"), silence(1500)]))
    assert (await c.until("duo.output_audio.duck"))["response_id"] == reply
    done = await c.until("response.done")
    assert done["response"]["id"] == reply and done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert (await c.until("duo.output_audio.restore"))["reason"] == "interrupted"
    answer = await c.until("response.created")
    assert answer["response"]["id"] != reply
    await c.until("response.done")
    assert metric(server, "duo_interruption_silence_seconds_count") == silenced + 1
    assert metric(server, "duo_first_audio_seconds_count") == first_audio + 1  # the answer, timed from the speech
    await c.ws.close()


async def test_response_create_while_a_reply_is_held_answers_once(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(**ANSWER)
    conv = conversation_of(server, c)
    await c.send("duo.input.slice", text="what is the capital of france", final=False, partial=True)
    held = await until(lambda: conv.held.response_id if len(conv.held.events) > 1 else None, "a held reply")
    await c.send("response.create", response={"metadata": {"asked": "yes"}})
    created = await c.until("response.created")
    done = await c.until("response.done")
    assert created["response"]["metadata"] == {"asked": "yes"} and done["response"]["status"] == "completed"
    assert mentions(c.events, held) == [] and sum(e["type"] == "response.created" for e in c.events) == 1
    assert [t["role"] for t in conv.handle.session.turns] == ["user", "assistant"]
    await c.ws.close()

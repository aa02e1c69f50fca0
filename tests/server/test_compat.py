"""What standard Realtime clients rely on, through a real server: partial settings, G.711, beta by
subprotocol, responses the client asks for, and DUO's gate on `speech_started`."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
import websockets

from duo.audio import g711
from duo.server.inprocess import InProcessServer
from duo.server.protocol import BETA_SUBPROTOCOL

from .helpers import Client, connect, live_server

ANSWER = {"process_threshold": 0.0}
IGNORE = {"process_threshold": 1.0, "ignore_threshold": 0.0}


@pytest.fixture(scope="module")
def server(embedded) -> Iterator[InProcessServer]:
    with live_server(embedded, tts="espeak-ng") as live:
        yield live


def _speech(text: str, rate: int) -> np.ndarray:
    raw = subprocess.run(f"espeak-ng --stdout '{text}' | sox - -t raw -r {rate} -e signed -b 16 -c 1 -",
                         shell=True, check=True, capture_output=True).stdout
    return np.concatenate([np.frombuffer(raw, dtype="<i2"), np.zeros(rate, dtype="<i2")])


async def test_an_unsupported_field_is_named_and_the_rest_applies(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.send("session.update", event_id="evt_1", session={
        "instructions": "be brief", "max_output_tokens": 7, "tools": [{"type": "function", "name": "f"}],
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100},
                            "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}})
    error = await c.until("error")
    assert error["error"]["event_id"] == "evt_1" and error["error"]["param"] == "session.audio.input.format.rate"
    session = (await c.until("session.updated"))["session"]
    assert session["instructions"] == "be brief" and session["max_output_tokens"] == 7  # the rest applied
    td = session["audio"]["input"]["turn_detection"]
    assert td["type"] == "semantic_vad" and td["eagerness"] == "high" and td["duo"]["pause_ms"] == 300
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert [e["type"] for e in c.events].count("error") == 1  # tools are ignored, not refused
    await c.ws.close()


async def test_g711_in_and_out(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.send("session.update", session={
        "output_modalities": ["audio"], "max_output_tokens": 6,
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "duo", **ANSWER,
                                                                                 "forecast_tokens": 1}},
                  "output": {"format": {"type": "audio/pcma"}}}})
    session = (await c.until("session.updated"))["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    ulaw = g711.encode(_speech("what is the capital of france", 8000), "pcmu")
    for i in range(0, len(ulaw), 800):  # 100 ms
        await c.send("input_audio_buffer.append", audio=base64.b64encode(ulaw[i : i + 800]).decode())
        await asyncio.sleep(0.02)
    transcript = await c.until("duo.input.transcript")
    assert "capital" in transcript["text"].lower()
    created = await c.until("response.created")
    done = await c.until("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in c.events if e["type"] == "response.output_audio.delta"
                     and e["response_id"] == created["response"]["id"])
    pcm = g711.decode(audio, "pcma")
    assert done["response"]["status"] in ("completed", "incomplete") and len(pcm) > 4000  # > 0.5 s at 8 kHz
    assert np.abs(pcm.astype(np.float32)).mean() > 100  # speech, not silence
    await c.ws.close()


async def test_beta_by_subprotocol(server: InProcessServer) -> None:
    """Browsers cannot send `OpenAI-Beta`: the subprotocol says it, and the session takes the beta shape."""
    ws = await websockets.connect(server.url, subprotocols=["realtime", BETA_SUBPROTOCOL])
    created = json.loads(await ws.recv())
    assert created["type"] == "session.created" and created["session"]["input_audio_format"] == "pcm16"
    c = Client(ws)
    await c.add_text("hello")
    assert (await c.until("conversation.item.created"))["item"]["content"][0]["type"] == "input_text"
    await ws.close()


async def test_response_create_always_makes_one_response(server: InProcessServer) -> None:
    """With nothing said the assistant speaks first; while one runs, a second is refused by name."""
    c = await connect(server.url)
    await c.configure(max_tokens=60, **ANSWER)
    await c.send("response.create", event_id="evt_first", response={"metadata": {"k": "v"}})
    created = await c.until("response.created")
    assert created["response"]["metadata"] == {"k": "v"}
    await c.send("response.create", event_id="evt_again")
    error = await c.until("error")
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "evt_again"
    await c.until("response.done")
    assert sum(e["type"] == "response.created" for e in c.events) == 1
    await c.ws.close()


async def test_out_of_band_response_leaves_the_conversation_as_it_was(server: InProcessServer) -> None:
    c = await connect(server.url)
    await c.configure(max_tokens=6, **ANSWER)
    await c.add_text("my name is ada")
    await c.send("response.create", response={"conversation": "none", "instructions": "answer in one word",
                                              "output_modalities": ["text"]})
    done = (await c.until("response.done"))["response"]
    assert done["conversation_id"] is None
    assert not [e for e in c.events if e["type"] == "conversation.item.added" and e["item"]["role"] == "assistant"]
    session = next(s for s in server.state.sessions if s.id == c.events[0]["session"]["id"]).conversation
    for _ in range(100):  # the engine is back on the session's own conversation and settings
        engine = session.handle.session
        if not engine.turns and engine.input is not None and engine.config.instructions is None:
            break
        await asyncio.sleep(0.05)
    assert not engine.turns and " ".join(engine.input.texts) == "my name is ada"
    await c.ws.close()


async def test_speech_judged_ignore_never_reaches_standard_events(server: InProcessServer, tmp_path) -> None:
    """Raw voice activity goes to duo-aware clients only; a standard client hears nothing of ignored speech."""
    pcm = _speech("and then she said the meeting moved to thursday", 24000)
    for aware in (True, False):
        c = await connect(server.url)
        td = {"type": "duo" if aware else "semantic_vad", "duo": {**IGNORE, "forecast_tokens": 1}}
        await c.send("session.update", session={"audio": {"input": {"turn_detection": td}}})
        await c.until("session.updated")
        registry = server.state.metrics.registry
        before = registry.get_sample_value("duo_state_decisions_total", {"state": "ignore"}) or 0
        for i in range(0, len(pcm), 2400):
            await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i : i + 2400].tobytes()).decode())
            await asyncio.sleep(0.02)
        if aware:
            await c.until("duo.input.speech_started")
            assert (await c.until("duo.input.state"))["state"] == "ignore"
        else:  # nothing to see on the wire: wait until the server has judged it
            for _ in range(600):
                if (registry.get_sample_value("duo_state_decisions_total", {"state": "ignore"}) or 0) > before:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything it would have sent is on the wire by now
            with pytest.raises(TimeoutError):
                await c.until("input_audio_buffer.speech_started", timeout=0.5)
        kinds = {e["type"] for e in c.events}
        assert not kinds & {"input_audio_buffer.speech_started", "input_audio_buffer.committed",
                            "conversation.item.added", "conversation.item.input_audio_transcription.completed"}
        assert aware == any(k.startswith("duo.") for k in kinds)
        await c.ws.close()

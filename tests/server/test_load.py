"""Overload is said, not silent: new sessions get 1013 `overloaded` with the figures, running sessions an
`error` first; and what /metrics shows of load (ticks up to 30 s, the KV pool)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request

import numpy as np

from . import rawws
from .helpers import connect, live_server


def _metrics(server) -> dict[str, float]:
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))}


def test_slow_ticks_refuse_new_sessions_and_tell_running_ones(tiny) -> None:
    """Any tick is too slow for a limit of a microsecond: the session talking is told, a new one is refused
    with 1013 and the figures; once no slow tick is recent, sessions are taken again."""
    with live_server(tiny, overload_tick_s=1e-6) as s:
        async def run() -> None:
            a = await connect(s.url)
            await a.configure(max_tokens=4, process_threshold=0.0)
            await a.say("hello")
            await a.until("response.done")  # it is served all the same ...
            told = [e["error"] for e in a.events if e["type"] == "error"]  # ... and was told, once
            assert [(e["code"], e["type"]) for e in told] == [("overloaded", "server_error")]
            assert "engine ticks take" in told[0]["message"]
            sock, status = rawws.handshake(s.port)
            assert status == 101
            opcode, payload = rawws.read_frame(sock)
            assert opcode == 0x1 and b'"overloaded"' in payload and b"limit" in payload
            assert rawws.close_code(sock) == 1013
            sock.close()
            assert _metrics(s)["duo_overloaded"] == 1.0
            deadline = time.monotonic() + 30
            while _metrics(s)["duo_overloaded"]:  # no tick since: the window empties
                assert time.monotonic() < deadline
                await asyncio.sleep(0.5)
            b = await connect(s.url)
            await b.ws.close()
            await a.ws.close()

        asyncio.run(run())
        assert _metrics(s)['duo_sessions_refused_total{reason="overloaded"}'] == 1.0


def _speech(tmp_path, text: str) -> bytes:
    wav = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", "24000", "-e", "signed", "-b", "16", "-c", "1", "-"],
                         check=True, capture_output=True).stdout
    return raw + np.zeros(24_000, dtype="<i2").tobytes()


def test_slow_recognition_tells_the_sessions_that_speak(tiny, tmp_path) -> None:
    import base64

    with live_server(tiny, tts="none", overload_recognition_s=1e-6) as s:
        async def run() -> None:
            speaking, typing = await connect(s.url), await connect(s.url)
            await speaking.configure(max_tokens=2)
            pcm = _speech(tmp_path, "what is the capital of france")
            for i in range(0, len(pcm), 4800):
                await speaking.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i : i + 4800]).decode())
                await asyncio.sleep(0.02)
            await speaking.until("conversation.item.input_audio_transcription.delta", timeout=120)
            told = [e["error"] for e in speaking.events if e["type"] == "error"]  # before the first transcript
            assert [e["code"] for e in told] == ["overloaded"] and "recognizing" in told[0]["message"]
            await typing.send("input_audio_buffer.clear")  # had it been told, the error would come first
            await typing.until("input_audio_buffer.cleared")
            assert not any(e["type"] == "error" for e in typing.events)
            for c in (speaking, typing):
                await c.ws.close()

        asyncio.run(run())


def test_metrics_show_long_ticks_and_the_kv_pool(tiny) -> None:
    with live_server(tiny) as s:
        before = _metrics(s)
        assert 'duo_tick_seconds_bucket{le="30.0"}' in before
        idle = before['duo_kv_blocks{state="used"}']

        async def talk() -> float:
            c = await connect(s.url)
            await c.configure(max_tokens=8, process_threshold=0.0)
            await c.say("tell me about the sea")
            await c.until("response.done")
            used = _metrics(s)['duo_kv_blocks{state="used"}']
            await c.ws.close()
            return used

        assert asyncio.run(talk()) > idle
        deadline = time.monotonic() + 30
        while (after := _metrics(s))['duo_kv_blocks{state="used"}'] != idle:  # the session's blocks came back
            assert time.monotonic() < deadline
            time.sleep(0.2)
        engine = s.state.loop.engine
        assert after['duo_kv_blocks{state="used"}'] + after['duo_kv_blocks{state="free"}'] == engine.kv.num_blocks - 1

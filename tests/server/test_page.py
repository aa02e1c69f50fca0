"""The demo page in a real headless Chromium, its fake microphone fed a synthesized question.

Debian's `chromium` driven by Playwright (never a downloaded browser); the server is a live uvicorn with
the embedded model and its shipped adapter, so DUO's decisions are the model's own, speech output on.
Each test saves a screenshot under `artifacts/page/` (git-ignored) and prints its path. Any console
error or uncaught page error fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from duo.server.inprocess import InProcessServer

from .helpers import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "page"


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    from duo.engine.loader import load_backbone

    tuned = load_backbone(None, device="cpu")  # the embedded model with its shipped adapter
    with live_server(tuned, tts="espeak-ng") as live:
        yield live


def speech_wav(path: Path, *parts: str | float) -> Path:
    """A WAV of the parts in order: text spoken by espeak-ng, numbers as seconds of silence."""
    frames, rate = [], 22_050
    for i, part in enumerate(parts):
        if isinstance(part, str):
            spoken = path.with_name(f"{path.stem}-{i}.wav")
            subprocess.run(["espeak-ng", "-w", str(spoken), part], check=True)
            with wave.open(str(spoken)) as w:
                assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
                rate = w.getframerate()
                frames.append(w.readframes(w.getnframes()))
        else:
            frames.append(b"\0\0" * int(part * rate))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(frames))
    return path


@dataclass
class Recorder:
    """What the page did: console errors, uncaught errors, and every WebSocket event both ways."""

    errors: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str, outgoing: bool = False) -> list[dict[str, Any]]:
        return [e for e in (self.sent if outgoing else self.received) if e.get("type") == kind]


@contextmanager
def browser(capture: Path | None, **context: Any) -> Iterator[tuple[Any, Recorder]]:
    from playwright.sync_api import sync_playwright

    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    if capture is not None:
        args.append(f"--use-file-for-fake-audio-capture={capture}%noloop")  # played once, then silence
    rec = Recorder()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = chromium.new_context(viewport={"width": 1000, "height": 760}, **context).new_page()
            page.on("console", lambda m: m.type == "error" and rec.errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: rec.errors.append(f"page error: {e}"))

            def frames(ws: Any) -> None:
                ws.on("framesent", lambda f: rec.sent.append(json.loads(f)))
                ws.on("framereceived", lambda f: rec.received.append(json.loads(f)))

            page.on("websocket", frames)
            yield page, rec
        finally:
            chromium.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def open_page(page: Any, server: InProcessServer) -> None:
    page.goto(server.http + "/")
    page.wait_for_selector('#status[data-state="open"]', timeout=30_000)


def wait_applied(page: Any, rec: Recorder, applied: Callable[[dict[str, Any]], bool]) -> None:
    """Settings saved on the page reach the server as session.update; wait for the session it confirms."""
    deadline = time.monotonic() + 10
    while not any(applied(e["session"]) for e in rec.of("session.updated")):
        assert time.monotonic() < deadline, "the settings were not applied"
        page.wait_for_timeout(50)


def test_spoken_question_is_judged_and_answered(server: InProcessServer, tmp_path: Path) -> None:
    wav = speech_wav(tmp_path / "question.wav", 0.3, "what is the capital of france", 2.0)
    with browser(wav, color_scheme="dark") as (page, rec):
        open_page(page, server)
        # settings travel as session.update: a shorter reply keeps the test quick
        page.click("#open-settings")
        page.fill('input[name="maxTokens"]', "24")
        page.fill('input[name="pauseMs"]', "600")
        page.fill('input[name="incompleteTimeoutMs"]', "0")
        page.click("#save-settings")
        page.wait_for_function("document.querySelector('#settings').open === false")
        wait_applied(page, rec, lambda s: s["max_output_tokens"] == 24)
        update = rec.of("session.update", outgoing=True)[-1]["session"]
        assert update["audio"]["input"]["turn_detection"]["pause_ms"] == 600
        assert update["audio"]["input"]["turn_detection"]["incomplete_timeout_ms"] is None  # 0 in the form: never
        assert update["output_modalities"] == ["audio"]

        page.click("#mic")
        page.wait_for_selector('#mic[aria-pressed="true"]')
        page.wait_for_selector('.turn.user .slice[data-state="process"]', timeout=60_000)
        heard = page.inner_text(".turn.user").lower()
        assert "capital" in heard and "france" in heard, heard
        reply = page.locator(".turn.assistant").first
        page.wait_for_function(
            "document.querySelector('.turn.assistant')?.dataset.deltas >= 3", timeout=60_000)
        assert reply.locator(".said").inner_text().strip()
        page.wait_for_selector(".turn.assistant.speaking", timeout=30_000)  # its audio is playing
        page.wait_for_function("/\\d+ ms/.test(document.querySelector('#lat-reply .v').textContent)")
        screenshot(page, "answered")

        appended = rec.of("input_audio_buffer.append", outgoing=True)
        assert len(appended) > 50  # 40 ms chunks, streamed
        state = next(e for e in rec.of("duo.input.state") if e["state"] == "process")
        assert state["probs"]["process"] >= 0.5
        rid = rec.of("response.created")[0]["response"]["id"]
        assert any(e["response_id"] == rid for e in rec.of("response.output_audio.delta"))
        assert not rec.of("error")
    assert not rec.errors, rec.errors


def test_barge_in_cuts_the_first_reply(server: InProcessServer, tmp_path: Path) -> None:
    # The 2 s slicer hears "Tell me a story about a" + "dragon.", a one-word last slice the adapter may judge
    # unfinished (p(process) 0.46). A 1 s incomplete timeout then answers it well inside the 5 s of silence
    # (the timeout counts from that judgement, which a busy CPU makes late), so a reply is playing when the
    # second question cuts it either way.
    wav = speech_wav(tmp_path / "barge.wav", 0.3, "tell me a story about a dragon", 5.0,
                     "what is the capital of france", 3.0)
    with browser(wav) as (page, rec):
        open_page(page, server)
        page.click("#open-settings")
        page.fill('input[name="incompleteTimeoutMs"]', "1000")
        page.click("#save-settings")
        wait_applied(page, rec,
                     lambda s: s["audio"]["input"]["turn_detection"]["duo"].get("incomplete_timeout_ms") == 1000)
        page.click("#mic")
        page.wait_for_selector('.turn.assistant[data-status="interrupted"] .cut', timeout=90_000)
        page.wait_for_function("document.querySelectorAll('.turn.assistant').length === 2"
                               " && document.querySelectorAll('.turn.assistant')[1].dataset.deltas >= 1",
                               timeout=60_000)
        first, second = page.locator(".turn.assistant").all()
        assert first.get_attribute("data-status") == "interrupted"
        assert second.get_attribute("data-status") != "interrupted"
        page.wait_for_function("/\\d+ ms/.test(document.querySelector('#lat-stop .v').textContent)")
        screenshot(page, "barge-in")

        # the server cut the first reply because of the second question ...
        created = [e["response"]["id"] for e in rec.of("response.created")]
        cancelled = next(e["response"] for e in rec.of("response.done") if e["response"]["id"] == created[0])
        assert cancelled["status"] == "cancelled" and cancelled["status_details"]["reason"] == "turn_detected"
        # ... and the page flushed its audio and told the server how much of it was heard
        item = next(e["item"]["id"] for e in rec.of("response.output_item.added") if e["response_id"] == created[0])
        audio_ms = sum(len(e["delta"]) * 3 / 4 / 2 / 24 for e in rec.of("response.output_audio.delta")
                       if e["response_id"] == created[0])
        truncate = rec.of("conversation.item.truncate", outgoing=True)
        assert [t["item_id"] for t in truncate] == [item]
        assert 0 <= truncate[0]["audio_end_ms"] <= audio_ms  # what was played of what arrived
        assert any(e["item_id"] == item for e in rec.of("conversation.item.truncated"))
        assert rec.of("duo.input.speech_started")  # raw voice activity
        assert rec.of("duo.output_audio.duck")  # speech over the spoken reply, which the page ducks playback on
        assert not rec.of("error")
    assert not rec.errors, rec.errors


def test_capture_resampler_and_stream_clock(server: InProcessServer) -> None:
    """The capture path's arithmetic, run in the browser.

    The resampler keeps a tone's pitch and level and removes what would alias; the stream clock maps the
    server's stream time back to when the page captured that audio (the latency readouts rest on it).
    """
    with browser(None) as (page, rec):
        open_page(page, server)
        clock = page.evaluate("""async () => {
          const { StreamClock } = await import('/js/latency.js');
          const c = new StreamClock();
          c.reset(16000);
          for (let i = 1; i <= 10; i++) c.sent(640, 1000 + 40 * i);  // 40 ms chunks captured at 1040 ... 1400
          c.reset(16000);
          const before = c.captured(100);  // a new stream knows nothing yet
          for (let i = 1; i <= 10; i++) c.sent(640, 5000 + 40 * i);
          return [before, c.captured(0), c.captured(100), c.captured(400), c.captured(410), c.captured(2000)];
        }""")
        assert clock == [None, 5000, 5100, 5400, 5400, None]
        result = page.evaluate("""async () => {
          const { Resampler } = await import('/js/resampler.js');
          const tone = (rate, hz, n) =>
            Float32Array.from({ length: n }, (_, i) => Math.sin(2 * Math.PI * hz * i / rate));
          const level = (x, rate, hz) => {  // amplitude of the hz component (a DFT bin), skipping the edges
            let re = 0, im = 0, n = 0;
            for (let i = 2000; i < x.length - 2000; i++, n++) {
              re += x[i] * Math.cos(2 * Math.PI * hz * i / rate); im += x[i] * Math.sin(2 * Math.PI * hz * i / rate);
            }
            return 2 * Math.hypot(re, im) / n;
          };
          const run = (inRate, outRate, hz, block) => {
            const r = new Resampler(inRate, outRate), x = tone(inRate, hz, inRate), parts = [];
            for (let i = 0; i < x.length; i += block) parts.push(r.process(x.subarray(i, i + block)));
            const y = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
            let o = 0; for (const p of parts) { y.set(p, o); o += p.length; }
            return y;
          };
          const a = run(48000, 16000, 1000, 128), b = run(48000, 16000, 1000, 48000);
          const c = run(44100, 24000, 440, 128);
          const alias = run(48000, 16000, 12000, 128);  // above 8 kHz: would fold to 4 kHz
          let maxDiff = 0;
          for (let i = 0; i < Math.min(a.length, b.length); i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
          return { len: a.length, lenB: b.length, tone: level(a, 16000, 1000), off: level(a, 16000, 1100),
                   len441: c.length, tone441: level(c, 24000, 440), alias: level(alias, 16000, 4000), maxDiff };
        }""")
    assert 16000 - 64 <= result["len"] <= 16000 and result["len"] == result["lenB"]
    assert result["maxDiff"] < 1e-5  # block size does not matter: the stream is continuous
    assert abs(result["tone"] - 1) < 0.01 and result["off"] < 0.01
    assert 24000 - 64 <= result["len441"] <= 24000 and abs(result["tone441"] - 1) < 0.01
    assert result["alias"] < 0.003  # > 50 dB down
    assert not rec.errors, rec.errors


def test_api_key_from_settings_and_reconnect(tiny) -> None:
    """A refused page connects once its key is set; a session the server closes is reopened by itself."""
    with live_server(tiny, api_keys=["s3cret"], idle_timeout_s=1.5) as live, browser(None) as (page, rec):
        page.goto(live.http + "/")
        page.wait_for_selector('#status[data-state="waiting"]', timeout=30_000)  # no key: refused (HTTP 403)
        page.click("#open-settings")
        page.fill('input[name="apiKey"]', "s3cret")
        page.click("#save-settings")
        page.wait_for_selector('#status[data-state="open"]', timeout=30_000)
        refused = list(rec.errors)  # the browser's own log of each refused handshake, nothing else
        assert refused and all("Unexpected response code: 403" in e for e in refused), refused
        page.wait_for_function("[...document.querySelectorAll('.turn.system')]"
                               ".some(n => n.textContent.startsWith('Reconnected'))", timeout=30_000)
        notes = page.locator(".turn.system").all_inner_texts()
        assert any("idle_timeout" in n for n in notes) and any(n.startswith("Connection lost") for n in notes)
        assert len(rec.of("session.created")) >= 2
        assert rec.errors == refused

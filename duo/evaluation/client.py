"""One scenario through the real WebSocket API, as a microphone would send it, with every server event timed.

The scenario clock starts once the session is configured. Audio is sent in `chunk_ms` pieces, each as soon as
it has been "spoken" (the chunk covering t..t+c leaves at t+c), at `speed` times real time: at speed 1 the
clock is the wall clock; above 1 the server hears everything, pauses included, `speed` times faster, while
its compute runs on the wall clock (the scenario clock is wall time × speed). Between and after the parts the
microphone keeps sending silence, as a real one does. Every server event is recorded with its arrival time on
the scenario clock, audio payloads replaced by their duration.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from duo.audio.decode import WIRE_RATE

from . import metrics, playback
from .render import RATE, AudioPart, Part, WaitPart
from .scenario import Scenario

log = logging.getLogger(__name__)

TURN_DETECTION = {"duo": {"type": "duo"}, "server_vad": {"type": "server_vad"}}


@dataclass(frozen=True)
class PlayOptions:
    speed: float = 1.0
    chunk_ms: int = 40
    audio_out: bool = True
    max_tail_s: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout_s: float = 30.0
    duo_params: tuple[tuple[str, Any], ...] = ()  # set in DUO's turn_detection (e.g. confirm_ms), others default

    def turn_detection(self, mode: str) -> dict[str, Any]:
        return {**TURN_DETECTION[mode], **(dict(self.duo_params) if mode == "duo" else {})}


def to_wire(samples: np.ndarray) -> bytes:
    """16 kHz float samples as the session's 24 kHz PCM16."""
    from duo.audio.decode import resample, to_pcm16

    return to_pcm16(resample(samples, RATE, WIRE_RATE))


class Heard:
    """What the evaluation records of the user's speech: all of it, as the server heard it.

    Under DUO a standard client learns of speech only once DUO judges it for duo; the evaluation measures
    the raw hearing, so in that mode it records the `duo.input.*` events under the standard names the metrics
    read, and not the judged copies.
    """

    RAW: ClassVar[dict[str, str]] = {"duo.input.speech_started": "input_audio_buffer.speech_started",
                                     "duo.input.speech_stopped": "input_audio_buffer.speech_stopped"}
    JUDGED: ClassVar[frozenset[str]] = frozenset({"input_audio_buffer.speech_started", metrics.TRANSCRIPT,
                                                  "input_audio_buffer.speech_stopped", metrics.TRANSCRIPT_DELTA})

    def __init__(self, mode: str) -> None:
        self.raw = mode == "duo"
        self.words: dict[str, list[str]] = {}

    def __call__(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if not self.raw:
            return [event]
        if kind in self.JUDGED:
            return []
        if kind in self.RAW:
            return [{**event, "type": self.RAW[kind]}]
        if kind != "duo.input.transcript":
            return [event]
        item, text = event.get("item_id") or "", str(event.get("text", ""))
        words = self.words.setdefault(item, [])
        out = []
        if text:
            words.append(text)
            out.append({"type": metrics.TRANSCRIPT_DELTA, "item_id": item, "delta": text})
        if event.get("final"):
            if words:
                out.append({"type": metrics.TRANSCRIPT, "item_id": item, "transcript": " ".join(words)})
            self.words.pop(item, None)
        return out


def compact(event: dict[str, Any], t: float) -> dict[str, Any]:
    """A server event as recorded: its time, no event id, audio as a duration, response fields flattened."""
    kind = event.get("type", "?")
    out: dict[str, Any] = {"t": round(t, 3), "type": kind}
    for key, value in event.items():
        if key in ("type", "event_id", "session"):
            continue
        if key == "delta" and kind == playback.AUDIO_EVENT:
            out["audio_ms"] = round(len(base64.b64decode(value)) / 2 / WIRE_RATE * 1000, 1)
        elif key == "response" and isinstance(value, dict):
            out["response_id"] = value.get("id")
            out["status"] = value.get("status")
            if isinstance(value.get("status_details"), dict):
                out["reason"] = value["status_details"].get("reason")
        elif key == "item" and isinstance(value, dict):
            out["item_id"] = value.get("id")
        else:
            out[key] = value
    return out


class ScenarioRun:
    """The state of one scenario being played: the record it builds and the socket it talks on."""

    def __init__(self, scenario: Scenario, mode: str, options: PlayOptions) -> None:
        self.scenario, self.mode, self.options = scenario, mode, options
        self.heard = Heard(mode)
        self.record: dict[str, Any] = {
            "id": scenario.id, "expect": scenario.expect, "mode": mode, "speed": options.speed,
            "within_s": scenario.within_s, "output": "audio" if options.audio_out else "text",
            "segments": [], "events": [], "notes": [], "end": 0.0,
        }
        self.pos = 0.0  # audio sent so far, seconds on the scenario clock
        self.max_lag = 0.0
        self._t0 = 0.0
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def clock(self) -> float:
        assert self._loop is not None
        return (self._loop.time() - self._t0) * self.options.speed

    async def play(self, url: str, parts: list[Part]) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        opts = self.options
        ws = await asyncio.wait_for(connect(url, max_size=1 << 24, additional_headers=list(opts.headers),
                                            open_timeout=opts.connect_timeout_s, close_timeout=2),
                                    opts.connect_timeout_s + 5)
        try:
            await self._configure(ws)
            self._loop = asyncio.get_running_loop()
            self._t0 = self._loop.time()
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._stream(ws, parts)
            finally:
                self.record["end"] = round(self.clock(), 3)
                self._stopped = True
                await ws.close()  # the reader keeps draining meanwhile, so the server's close frame is read
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(reader, 5)
        finally:
            await ws.close()
        if self.max_lag > 0.25:
            self.record["notes"].append(f"client fell {self.max_lag:.2f} s behind the scenario clock")
        return self.record

    async def _configure(self, ws: Any) -> None:
        first = json.loads(await asyncio.wait_for(ws.recv(), self.options.connect_timeout_s))
        if first.get("type") != "session.created":
            raise ConnectionError(f"server refused the session: {first.get('error') or first}")
        session = {"output_modalities": ["audio" if self.options.audio_out else "text"],
                   "max_output_tokens": self.scenario.max_output_tokens,
                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": WIRE_RATE},
                                       "turn_detection": self.options.turn_detection(self.mode)}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), self.options.connect_timeout_s))
            if event.get("type") == "session.updated":
                return
            if event.get("type") == "error":
                raise ConnectionError(f"session.update refused: {event.get('error')}")

    async def _read(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                if self._stopped:
                    continue
                event = json.loads(message)
                for heard in self.heard(event):
                    self.record["events"].append(compact(heard, self.clock()))
                if event.get("type") == "error":
                    log.warning("scenario=%s mode=%s event=server_error error=%s", self.scenario.id, self.mode,
                                event.get("error"))
        except ConnectionClosed as exc:
            self.record["notes"].append(f"connection closed by the server: {exc}")

    async def _send(self, ws: Any, pcm: bytes) -> None:
        """Send one chunk once its audio has been spoken."""
        self.pos += len(pcm) / 2 / WIRE_RATE
        wait = (self.pos - self.clock()) / self.options.speed
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            self.max_lag = max(self.max_lag, -wait * self.options.speed)
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))

    async def _stream(self, ws: Any, parts: list[Part]) -> None:
        step = WIRE_RATE * self.options.chunk_ms // 1000 * 2
        silence = bytes(step)
        for part in parts:
            if isinstance(part, AudioPart):
                offset = self.pos
                self.record["segments"].extend(asdict(s.shifted(offset)) for s in part.segments)
                pcm = to_wire(part.samples)
                for i in range(0, len(pcm), step):
                    await self._send(ws, pcm[i : i + step])
            elif isinstance(part, WaitPart):
                await self._wait_for_reply(ws, part, silence)
        last = self.pos
        while not metrics.settled(self.record, self.clock()) and self.pos - last < self.options.max_tail_s:
            await self._send(ws, silence)

    async def _wait_for_reply(self, ws: Any, part: WaitPart, silence: bytes) -> None:
        """Silence until a reply to the latest query is heard, then `delay` more (or give up after `max_s`)."""
        since = max((s["start"] for s in self.record["segments"] if s["role"] == "query"), default=0.0)
        began = self.pos
        while self.pos - began < part.item.max_s:
            heard = [r for r in playback.replies(self.record) if r.created >= since and
                     playback.heard_by_user(r, self.record)]
            if heard:
                self.record["notes"].append(f"reply heard at {self.clock():.2f} s")
                break
            await self._send(ws, silence)
        else:
            self.record["notes"].append(f"no reply within {part.item.max_s:g} s of waiting")
        end = self.pos + part.item.delay
        while self.pos < end:
            await self._send(ws, silence)

"""A session's voice: reply text in, `response.output_audio.delta` events out, then the playback clock.

A reply is spoken as its text streams (its first clause, then sentence by sentence, in a worker thread). When
its audio is all out, the response is done; the reply then stays *speaking* for as long as the client takes to
play it, so speech during playback is a barge-in too. Stopping cancels synthesis at once.

A reply held until the user's turn is confirmed (`held.py`) is spoken ahead, unheard (`hold`): its chunks are
kept, not sent, so that its first audio is ready when the turn is. The confirmation may come any moment, so
its first piece is its first whole words, not a clause, and is ready soonest. `start` adopts it when the
released reply begins, `release` sends what is ready at once and lets the rest stream; `drop` cancels a
withdrawn one.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duo.audio.decode import WIRE_RATE as OUTPUT_RATE

from . import server_events as se
from .speech import SpeechServices


class Encoder:
    """Speech (PCM16 at 24 kHz) in the session's output format: as it is, or G.711 at 8 kHz."""

    def __init__(self, codec: str = "pcm16") -> None:
        self.codec = codec
        self.resampler: Any = None
        if codec != "pcm16":
            import soxr

            from duo.audio.g711 import G711_RATE

            self.resampler = soxr.ResampleStream(OUTPUT_RATE, G711_RATE, 1, dtype="int16", quality="HQ")

    def encode(self, pcm: bytes, last: bool = False) -> bytes:
        if self.resampler is None:
            return pcm
        from duo.audio import g711

        samples = self.resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=last)
        return g711.encode(samples, self.codec)


@dataclass
class Playback:
    """One reply being spoken."""

    response_id: str
    item_id: str  # "" while held and not yet adopted (the item is made when the reply is released)
    encoder: Encoder = field(default_factory=Encoder)
    text: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    live: asyncio.Event = field(default_factory=asyncio.Event)  # set: its audio goes to the client as it is made
    kept: list[bytes] = field(default_factory=list)  # encoded audio made while held, sent at its release
    live_at: float = 0.0  # monotonic time its audio began going out
    audio_ms: float = 0.0  # audio made so far (all of it sent, but while held)
    fed_chars: int = 0  # reply characters the voice has taken in
    spoken_chars: int = 0  # characters taken in when the newest audio chunk was made (an upper bound)
    text_at: float = 0.0  # monotonic time of its first text delta (0: none yet)
    first_audio_s: float | None = None  # from its first text delta to its first audio chunk sent

    def heard_chars(self, audio_end_ms: float) -> int:
        """Characters of the reply the client played in `audio_end_ms`, at an even rate over what was spoken."""
        if self.audio_ms <= 0:
            return 0
        return int(self.spoken_chars * min(1.0, audio_end_ms / self.audio_ms))


class SpeechOut:
    def __init__(self, services: SpeechServices, send: Callable[[se.ServerEvent], None],
                 on_spoken: Callable[[Playback], None]) -> None:
        self.services, self.send, self.on_spoken = services, send, on_spoken
        self.speaking: Playback | None = None  # audio still being produced or played
        self.held: dict[str, Playback] = {}  # by response id: spoken ahead, nothing sent until released

    async def hold(self, response_id: str, codec: str = "pcm16") -> Playback | None:
        """Speak a held reply ahead, sending nothing (None when speech output or pre-synthesis is off)."""
        if not self.services.presynthesize or (speaker := await self.services.speaker()) is None:
            return None
        self.drop(response_id)
        playback = self.held[response_id] = Playback(response_id, "", Encoder(codec))
        playback.task = asyncio.create_task(self._speak(playback, speaker, hurried=True))
        return playback

    def hold_text(self, response_id: str, delta: str) -> None:
        """A held reply's text, as the engine makes it (its replay at the release is not fed again)."""
        if (playback := self.held.get(response_id)) is not None and not playback.item_id:
            self._put(playback, delta)

    async def start(self, response_id: str, item_id: str, codec: str = "pcm16") -> Playback | None:
        """Speak a new reply (None when speech output is off); a held one spoken ahead is adopted, still held."""
        playback = self.held.get(response_id)
        if playback is not None and not playback.item_id and playback.encoder.codec == codec:
            playback.item_id = item_id
            self.speaking = playback
            return playback
        self.drop(response_id)
        speaker = await self.services.speaker()
        if speaker is None:
            return None
        playback = Playback(response_id, item_id, Encoder(codec))
        self._go_live(playback)
        self.speaking = playback
        playback.task = asyncio.create_task(self._speak(playback, speaker))
        return playback

    def release(self, response_id: str) -> None:
        """The held reply was released: the audio it has made goes out now, the rest as it is made. One that
        was not adopted (or stopped since) is dropped."""
        playback = self.held.pop(response_id, None)
        if playback is None:
            return
        if playback is not self.speaking:
            self._cancel(playback)
            return
        self._go_live(playback)
        if playback.text_at:  # the client sees its text now: time the voice's share of the wait from here
            playback.text_at = playback.live_at
        kept, playback.kept = playback.kept, []
        for audio in kept:
            self._send_audio(playback, audio)

    def drop(self, response_id: str) -> None:
        """A held reply was withdrawn: its synthesis is cancelled and its audio never sent."""
        if (playback := self.held.pop(response_id, None)) is not None:
            if self.speaking is playback:
                self.speaking = None
            self._cancel(playback)

    def feed(self, playback: Playback, delta: str) -> None:
        if playback.live.is_set():  # held, it was fed as the engine made the text (`hold_text`)
            self._put(playback, delta)

    def _put(self, playback: Playback, delta: str) -> None:
        if not playback.text_at:
            playback.text_at = time.monotonic()
        playback.text.put_nowait(delta)

    def _go_live(self, playback: Playback) -> None:
        playback.live_at = time.monotonic()
        playback.live.set()

    @staticmethod
    def _cancel(playback: Playback) -> None:
        if playback.task is not None:
            playback.task.cancel()

    def end(self, playback: Playback) -> None:
        """No more text: the voice finishes what it has, then the response is done."""
        playback.text.put_nowait(None)

    def stop(self) -> Playback | None:
        """Stop the reply being spoken or played, if any; returns it."""
        playback, self.speaking = self.speaking, None
        if playback is not None:
            self._cancel(playback)
        return playback

    def close(self) -> None:
        self.stop()
        for response_id in list(self.held):
            self.drop(response_id)

    def _first_audio(self, playback: Playback) -> None:
        playback.first_audio_s = time.monotonic() - playback.text_at
        if self.services.on_first_audio is not None:
            self.services.on_first_audio(playback.first_audio_s)

    async def _speak(self, playback: Playback, speaker: Any, hurried: bool = False) -> None:
        """Speak the reply's text as it comes; `hurried`: its first piece is its first whole words."""
        async def deltas() -> AsyncIterator[str]:
            while (delta := await playback.text.get()) is not None:
                playback.fed_chars += len(delta)
                yield delta

        async for chunk in speaker.aspeak(deltas(), hurried=hurried):
            playback.audio_ms += len(chunk) / 2 / OUTPUT_RATE * 1000
            playback.spoken_chars = playback.fed_chars
            if audio := playback.encoder.encode(chunk):
                self._send_audio(playback, audio)
        await playback.live.wait()  # a held reply ends only once it is released: its audio goes first
        if tail := playback.encoder.encode(b"", last=True):
            self._send_audio(playback, tail)
        playback.spoken_chars = playback.fed_chars
        self.send(se.OutputAudioDone(response_id=playback.response_id, item_id=playback.item_id))
        self.on_spoken(playback)
        # playback outlives generation: the reply stays live (interruptible) until the client has played it
        await asyncio.sleep(max(0.0, playback.audio_ms / 1000 - (time.monotonic() - playback.live_at)))
        if self.speaking is playback:
            self.speaking = None

    def _send_audio(self, playback: Playback, audio: bytes) -> None:
        """Audio to the client, or kept while the reply is held (first audio is timed when it is sent)."""
        if not playback.live.is_set():
            playback.kept.append(audio)
            return
        self.send(se.OutputAudioDelta(response_id=playback.response_id, item_id=playback.item_id,
                                      delta=base64.b64encode(audio).decode()))
        if playback.first_audio_s is None:
            self._first_audio(playback)

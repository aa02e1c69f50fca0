"""A session's voice: reply text in, `response.output_audio.delta` events out, then the playback clock.

A reply is spoken as its text streams (its first clause, then sentence by sentence, in a worker thread). When
its audio is all out, the response is done; the reply then stays *speaking* for as long as the client takes to
play it, so speech during playback is a barge-in too. Stopping cancels synthesis at once.
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
    item_id: str
    encoder: Encoder = field(default_factory=Encoder)
    text: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    audio_ms: float = 0.0  # audio sent so far
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

    async def start(self, response_id: str, item_id: str, codec: str = "pcm16") -> Playback | None:
        """Speak a new reply (None when speech output is off)."""
        speaker = await self.services.speaker()
        if speaker is None:
            return None
        playback = Playback(response_id, item_id, Encoder(codec))
        self.speaking = playback
        playback.task = asyncio.create_task(self._speak(playback, speaker))
        return playback

    def feed(self, playback: Playback, delta: str) -> None:
        if not playback.text_at:
            playback.text_at = time.monotonic()
        playback.text.put_nowait(delta)

    def end(self, playback: Playback) -> None:
        """No more text: the voice finishes what it has, then the response is done."""
        playback.text.put_nowait(None)

    def stop(self) -> Playback | None:
        """Stop the reply being spoken or played, if any; returns it."""
        playback, self.speaking = self.speaking, None
        if playback is not None and playback.task is not None:
            playback.task.cancel()
        return playback

    def close(self) -> None:
        self.stop()

    def _first_audio(self, playback: Playback) -> None:
        playback.first_audio_s = time.monotonic() - playback.text_at
        if self.services.on_first_audio is not None:
            self.services.on_first_audio(playback.first_audio_s)

    async def _speak(self, playback: Playback, speaker: Any) -> None:
        async def deltas() -> AsyncIterator[str]:
            while (delta := await playback.text.get()) is not None:
                playback.fed_chars += len(delta)
                yield delta

        started = time.monotonic()
        ids = {"response_id": playback.response_id, "item_id": playback.item_id}
        async for chunk in speaker.aspeak(deltas()):
            playback.audio_ms += len(chunk) / 2 / OUTPUT_RATE * 1000
            playback.spoken_chars = playback.fed_chars
            if audio := playback.encoder.encode(chunk):
                self.send(se.OutputAudioDelta(**ids, delta=base64.b64encode(audio).decode()))
                if playback.first_audio_s is None:
                    self._first_audio(playback)
        if tail := playback.encoder.encode(b"", last=True):
            self.send(se.OutputAudioDelta(**ids, delta=base64.b64encode(tail).decode()))
        playback.spoken_chars = playback.fed_chars
        self.send(se.OutputAudioDone(**ids))
        self.on_spoken(playback)
        # playback outlives generation: the reply stays live (interruptible) until the client has played it
        await asyncio.sleep(max(0.0, playback.audio_ms / 1000 - (time.monotonic() - started)))
        if self.speaking is playback:
            self.speaking = None

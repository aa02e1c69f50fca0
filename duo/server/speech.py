"""The speech services of the server: shared recognizers and voices, and each session's audio input.

Models are loaded once per process and shared; each session owns only its stream state (decoder,
slicer, transcriber). The VAD of every session's frames, and recognition of their slices, each go through one
batching worker off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SpeechServices:
    """Loaded lazily (the first audio session pays the load), or up front by `warm`."""

    asr_model: str = "auto"  # base on CUDA, tiny.en on a CPU (duo.audio.whisper_model)
    tts_backend: str = "auto"
    device: str | None = None
    _recognizer: Any = None
    _batcher: Any = None
    _vad: Any = None
    _speaker: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    on_recognized: Callable[[float], None] | None = None  # seconds from a slice queued to its text (load)
    on_first_audio: Callable[[float], None] | None = None  # seconds from a reply's first text to its first audio
    first_clause_words: int = 4  # a reply is spoken from its first clause of this many words (0: first sentence)
    first_piece_words: int = 6  # ... or from its first words, this many, where no clause ends by then (0: never)
    presynthesize: bool = True  # a held reply is spoken while it waits, its audio sent once it is released
    tts_threads: int | None = None  # the Piper voice's CPU threads (default: one a core, 4 at most)

    async def recognizer(self) -> tuple[Any, Any]:
        async with self._lock:
            if self._recognizer is None:
                from duo.audio.asr import Recognizer
                from duo.audio.batcher import AsrBatcher
                from duo.audio.whisper_model import load_whisper

                whisper = await asyncio.to_thread(load_whisper, self.asr_model, self.device)
                self._recognizer, self._batcher = Recognizer(whisper), TimedBatcher(AsrBatcher(), self._recognized)
            return self._recognizer, self._batcher

    def vad(self) -> Any:
        """The process's `VadBatcher` (made on first use: the Silero model loads in ~0.1 s)."""
        if self._vad is None:
            from duo.audio.vad_batcher import VadBatcher

            self._vad = VadBatcher()
        return self._vad

    def _recognized(self, seconds: float) -> None:
        if self.on_recognized is not None:
            self.on_recognized(seconds)

    async def speaker(self) -> Any:
        async with self._lock:
            if self._speaker is None and self.tts_backend != "none":
                from duo.audio.tts import Speaker, load_voice

                self._speaker = Speaker(await asyncio.to_thread(load_voice, self.tts_backend, self.tts_threads),
                                        first_clause_words=self.first_clause_words,
                                        first_piece_words=self.first_piece_words)
            return self._speaker

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        if self._vad is not None:
            await self._vad.close()


class TimedBatcher:
    """The process's recognition batcher, timing each slice from queued to recognized (the server's load)."""

    def __init__(self, batcher: Any, on_recognized: Callable[[float], None]) -> None:
        self.batcher, self.on_recognized = batcher, on_recognized

    async def transcribe(self, stream: Any, piece: Any) -> Any:
        start = time.monotonic()
        text = await self.batcher.transcribe(stream, piece)
        self.on_recognized(time.monotonic() - start)
        return text

    async def close(self) -> None:
        await self.batcher.close()


class AudioInput:
    """One session's microphone stream (`LiveInput`), held to real time, its frames judged and its slices
    recognized through the process's batchers."""

    def __init__(self, recognizer: Any, batcher: Any, vad: Any, rate: int, slice_ms: int, pause_ms: int,
                 burst_s: float, codec: str = "pcm16", early_pause_ms: int | None = None,
                 confirm_ms: int | None = None) -> None:
        from duo.audio.pipeline import LiveInput
        from duo.audio.slicer import SlicerConfig

        early = early_pause_ms / 1000 if early_pause_ms is not None else None
        confirm = confirm_ms / 1000 if confirm_ms is not None else None
        self.live = LiveInput(recognizer, rate, SlicerConfig(slice_s=slice_ms / 1000, pause_s=pause_ms / 1000,
                                                             early_pause_s=early, confirm_s=confirm), codec=codec)
        self.batcher, self.vad = batcher, vad
        self.burst_s = burst_s
        self.started = time.monotonic()
        self.received_s = 0.0

    async def push_base64(self, payload: str) -> list[Any]:
        """Decode and slice; raises AudioError on bad audio and RateLimited when far ahead of real time."""
        from duo.audio.decode import SAMPLE_RATE

        samples = self.live.decode(payload)
        ahead = self.received_s + len(samples) / SAMPLE_RATE - (time.monotonic() - self.started)
        if ahead > self.burst_s:
            raise RateLimited(f"audio is arriving {ahead:.1f} s ahead of real time (limit {self.burst_s:.0f} s)")
        self.received_s += len(samples) / SAMPLE_RATE
        return await self.vad.push(self.live.slicer, samples)

    def commit(self) -> list[Any]:
        return self.live.flush()

    def clear(self) -> None:
        self.live.clear()

    async def recognize(self, piece: Any) -> Any:
        """A slice's words; a final slice its pause's partial already read takes that reading at once, not
        behind other sessions' batch (the stream's slices come one at a time, so nothing decodes meanwhile)."""
        if (text := self.live.transcriber.reuse(piece)) is not None:
            return text
        return await self.batcher.transcribe(self.live.transcriber, piece)


class RateLimited(Exception):
    pass

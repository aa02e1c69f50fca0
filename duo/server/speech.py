"""The speech services of the server: shared recognizers and voices, and each session's audio input.

Models are loaded once per process and shared; each session owns only its stream state (decoder,
slicer, transcriber). Recognition of slices from all sessions goes through one batching worker.
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

    asr_model: str = "tiny.en"
    tts_backend: str = "auto"
    device: str | None = None
    _recognizer: Any = None
    _batcher: Any = None
    _speaker: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    on_recognized: Callable[[float], None] | None = None  # seconds from a slice queued to its text (load)

    async def recognizer(self) -> tuple[Any, Any]:
        async with self._lock:
            if self._recognizer is None:
                from duo.audio.asr import Recognizer
                from duo.audio.batcher import AsrBatcher
                from duo.audio.whisper_model import load_whisper

                whisper = await asyncio.to_thread(load_whisper, self.asr_model, self.device)
                self._recognizer, self._batcher = Recognizer(whisper), AsrBatcher()
            return self._recognizer, self._batcher

    async def speaker(self) -> Any:
        async with self._lock:
            if self._speaker is None and self.tts_backend != "none":
                from duo.audio.tts import Speaker, load_voice

                self._speaker = Speaker(await asyncio.to_thread(load_voice, self.tts_backend))
            return self._speaker

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()


class AudioInput:
    """One session's microphone stream: PCM16 in, speech events and recognized slices out, in order."""

    def __init__(self, services: SpeechServices, recognizer: Any, batcher: Any, rate: int, slice_ms: int,
                 pause_ms: int, burst_s: float) -> None:
        from duo.audio.decode import PcmStream
        from duo.audio.slicer import Slicer, SlicerConfig
        from duo.audio.transcriber import StreamTranscriber

        self.services = services
        self.stream = PcmStream(rate)
        self.slicer = Slicer(SlicerConfig(slice_s=slice_ms / 1000, pause_s=pause_ms / 1000))
        self.transcriber = StreamTranscriber(recognizer)
        self.batcher = batcher
        self.burst_s = burst_s
        self.started = time.monotonic()
        self.received_s = 0.0

    def push_base64(self, payload: str) -> list[Any]:
        """Decode and slice; raises AudioError on bad audio and RateLimited when far ahead of real time."""
        samples = self.stream.push_base64(payload)
        ahead = self.received_s + len(samples) / 16_000 - (time.monotonic() - self.started)
        if ahead > self.burst_s:
            raise RateLimited(f"audio is arriving {ahead:.1f} s ahead of real time (limit {self.burst_s:.0f} s)")
        self.received_s += len(samples) / 16_000
        return self.slicer.push(samples)

    def commit(self) -> list[Any]:
        return self.slicer.flush()

    def clear(self) -> None:
        self.slicer.clear()

    async def recognize(self, piece: Any) -> Any:
        start = time.monotonic()
        text = await self.batcher.transcribe(self.transcriber, piece)
        if self.services.on_recognized is not None:
            self.services.on_recognized(time.monotonic() - start)
        return text


class RateLimited(Exception):
    pass

"""A session's microphone: `input_audio_buffer.*` audio in; speech starts, stops and recognized slices out.

Audio is decoded and cut into slices (2 s, closed at pauses) as it arrives; slices are recognized in order,
batched with other sessions'. What the speech means for the conversation (a turn, a barge-in, an answer) is
decided by the owner, told through `Ears`: this module knows nothing of turns or replies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol as p
from .options import WireFormat
from .speech import AudioInput, RateLimited, SpeechServices

if TYPE_CHECKING:
    from duo.audio.events import TextSlice


class Ears(Protocol):
    """What the microphone reports, in the order it happened."""

    def speech_started(self, audio_ms: int) -> None: ...
    def speech_stopped(self, audio_ms: int) -> None: ...
    def recognized(self, text: TextSlice) -> None: ...


@dataclass(frozen=True)
class Hearing:
    """How the stream is decoded and sliced: the wire format, slice length and the pause that ends speech."""

    format: WireFormat
    slice_ms: int
    pause_ms: int


class SpeechIn:
    def __init__(self, speech: SpeechServices, burst_s: float, ears: Ears, hearing: Hearing) -> None:
        self.speech, self.burst_s, self.ears, self.hearing = speech, burst_s, ears, hearing
        self.stream: AudioInput | None = None
        self.pieces: asyncio.Queue[tuple[AudioInput, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.unreported = 0  # slices queued or being recognized
        self.idle = asyncio.Event()
        self.idle.set()

    def configure(self, hearing: Hearing) -> None:
        """New rate or slicing: the next append starts a fresh stream."""
        if hearing != self.hearing:
            self.hearing, self.stream = hearing, None

    async def append(self, event: p.AudioAppend) -> None:
        from duo.audio.errors import AudioError

        if self.stream is None:
            recognizer, batcher = await self.speech.recognizer()
            h = self.hearing
            self.stream = AudioInput(recognizer, batcher, h.format.rate, h.slice_ms, h.pause_ms, self.burst_s,
                                     h.format.codec)
            if self.task is None:
                self.task = asyncio.create_task(self._recognize())
        try:
            events = self.stream.push_base64(event.audio)
        except RateLimited as exc:
            raise p.ProtocolError("rate_limited", str(exc), event.event_id) from None
        except (AudioError, ValueError) as exc:
            raise p.ProtocolError("invalid_audio", str(exc), event.event_id, "audio") from None
        self._report(events)

    def commit(self, event: p.AudioCommit) -> bool:
        """End the utterance being heard now; returns whether a slice of it is still to be recognized."""
        if self.stream is None:
            raise p.ProtocolError("input_audio_buffer_commit_empty", "no audio to commit", event.event_id)
        before = self.unreported
        self._report(self.stream.commit())
        return self.unreported > before

    async def recognized_all(self) -> None:
        """Return once every slice cut so far has been recognized and reported."""
        await self.idle.wait()

    def clear(self) -> None:
        if self.stream is not None:
            self.stream.clear()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _report(self, events: list[Any]) -> None:
        from duo.audio.events import SpeechStarted, SpeechStopped

        assert self.stream is not None
        for e in events:
            if isinstance(e, SpeechStarted):
                self.ears.speech_started(int(e.time_s * 1000))
            elif isinstance(e, SpeechStopped):
                self.ears.speech_stopped(int(e.time_s * 1000))
            else:
                self.unreported += 1
                self.idle.clear()
                self.pieces.put_nowait((self.stream, e))

    async def _recognize(self) -> None:
        """Slices in order: recognized (batched with other sessions), then reported."""
        while True:
            stream, piece = await self.pieces.get()
            try:
                self.ears.recognized(await stream.recognize(piece))
            finally:
                self.unreported -= 1
                if not self.unreported:
                    self.idle.set()

"""A session's microphone: `input_audio_buffer.*` audio in; speech starts, stops and recognized slices out.

Audio is decoded and cut into slices (2 s, closed at pauses) as it arrives; slices are recognized in order,
batched with other sessions'. Every `partial_ms` of speech (and as each pause begins) the open slice is also
recognized provisionally, a partial that newer audio waits behind being skipped. The owner's newest judgement
(`judged_complete`) lets the slicer end speech after the short pause; the end is then confirmed by silence or
resumed by speech. What the speech means for the conversation (a turn, a barge-in, an answer) is
decided by the owner, told through `Ears`: this module knows nothing of turns or replies.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol as p
from .options import SessionOptions, WireFormat
from .speech import AudioInput, RateLimited, SpeechServices

if TYPE_CHECKING:
    from duo.audio.events import TextSlice


class Ears(Protocol):
    """What the microphone reports, in the order it happened. `at` is when it happened on the monotonic clock
    (the stream's time mapped back from the newest audio received). An onset is the first frame of a run that
    may become speech: `speech_started` confirms it, `onset_dropped` says it was too short."""

    def speech_onset(self, audio_ms: int, at: float) -> None: ...
    def onset_dropped(self) -> None: ...
    def speech_started(self, audio_ms: int, at: float, resumed: bool = False) -> None: ...
    def speech_stopped(self, audio_ms: int, at: float, early: bool = False) -> None: ...
    def pause_confirmed(self, audio_ms: int) -> None: ...
    def recognized(self, text: TextSlice) -> None: ...


@dataclass(frozen=True)
class Hearing:
    """How the stream is decoded and sliced: the wire format, slice length, the pause that ends speech, the
    short pause that ends speech judged complete and the silence that confirms it, the partials' interval."""

    format: WireFormat
    slice_ms: int
    pause_ms: int
    early_pause_ms: int | None = None
    confirm_ms: int | None = None
    partial_ms: int = 0

    @classmethod
    def of(cls, options: SessionOptions, judged: bool, partial_ms: int) -> Hearing:
        """A session's hearing; without DUO judging the words, only the plain pause ends speech.
        `partial_ms`: the server's interval for partials, unless the session set its own."""
        slice_ms, pause_ms = options.slicing_ms
        duo = options.duo
        if duo is None or not judged:
            return cls(options.input_format, slice_ms, pause_ms)
        d = duo.params
        partial = d.partial_ms if d.partial_ms is not None else partial_ms
        return cls(options.input_format, slice_ms, pause_ms, d.early, d.confirm, partial)


class SpeechIn:
    def __init__(self, speech: SpeechServices, burst_s: float, ears: Ears, hearing: Hearing) -> None:
        self.speech, self.burst_s, self.ears, self.hearing = speech, burst_s, ears, hearing
        self.stream: AudioInput | None = None
        self.pieces: asyncio.Queue[tuple[AudioInput, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.unreported = 0  # slices queued or being recognized
        self.idle = asyncio.Event()
        self.idle.set()
        self.complete = False  # see `judged_complete`
        self.onset = False  # an onset was reported and neither confirmed nor dropped

    def configure(self, hearing: Hearing) -> None:
        """New rate or slicing: the next append starts a fresh stream."""
        if hearing != self.hearing:
            self.hearing, self.stream = hearing, None

    async def append(self, event: p.AudioAppend) -> None:
        from duo.audio.errors import AudioError

        if self.stream is None:
            recognizer, batcher = await self.speech.recognizer()
            h = self.hearing
            self.stream = AudioInput(recognizer, batcher, self.speech.vad(), h.format.rate, h.slice_ms,
                                     h.pause_ms, self.burst_s, h.format.codec, h.early_pause_ms, h.confirm_ms)
            self.stream.live.slicer.early_ok = self.complete
            if self.task is None:
                self.task = asyncio.create_task(self._recognize())
        try:
            events = await self.stream.push_base64(event.audio)
        except RateLimited as exc:
            raise p.ProtocolError("rate_limited", str(exc), event.event_id) from None
        except (AudioError, ValueError) as exc:
            raise p.ProtocolError("invalid_audio", str(exc), event.event_id, "audio") from None
        self._report(events)
        self._onset()
        if (piece := self.stream.live.slicer.partial(self.hearing.partial_ms / 1000)) is not None:
            self.pieces.put_nowait((self.stream, piece))

    def judged_complete(self, complete: bool) -> None:
        """The newest judgement of the words: complete (`process`) lets the short pause end them."""
        self.complete = complete
        if self.stream is not None:
            self.stream.live.slicer.early_ok = complete

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

    def _onset(self) -> None:
        """Report a new run of speech frames at once, and its end if it broke before becoming speech."""
        assert self.stream is not None
        slicer = self.stream.live.slicer
        onset = slicer.onset_s
        if onset is not None and not self.onset:
            self.onset = True
            self.ears.speech_onset(int(onset * 1000), self._at(onset))
        elif onset is None and self.onset:
            self.onset = False
            if not slicer.speaking:
                self.ears.onset_dropped()

    def _at(self, time_s: float) -> float:
        """Stream time `time_s` on the monotonic clock, from the newest audio heard."""
        assert self.stream is not None
        return time.monotonic() - (self.stream.live.slicer.time_s - time_s)

    def _report(self, events: list[Any]) -> None:
        from duo.audio.events import PauseConfirmed, SpeechStarted, SpeechStopped

        assert self.stream is not None
        for e in events:
            if isinstance(e, SpeechStarted):
                self.ears.speech_started(int(e.time_s * 1000), self._at(e.time_s), e.resumed)
            elif isinstance(e, SpeechStopped):
                self.ears.speech_stopped(int(e.time_s * 1000), self._at(e.time_s), e.early)
            elif isinstance(e, PauseConfirmed):
                self.ears.pause_confirmed(int(e.time_s * 1000))
            else:
                self.unreported += 1
                self.idle.clear()
                self.pieces.put_nowait((self.stream, e))

    async def _recognize(self) -> None:
        """Slices in order: recognized (batched with other sessions), then reported. A partial that newer
        audio already waits behind is stale: skipped, so partials never pile up behind slow recognition."""
        while True:
            stream, piece = await self.pieces.get()
            if piece.partial:
                if self.pieces.empty() and stream is self.stream:
                    self.ears.recognized(await stream.recognize(piece))
                continue
            try:
                self.ears.recognized(await stream.recognize(piece))
            finally:
                self.unreported -= 1
                if not self.unreported:
                    self.idle.set()

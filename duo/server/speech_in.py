"""A session's microphone: `input_audio_buffer.*` in, speech events, transcripts and text slices out.

Audio is decoded and cut into slices (2 s, closed at pauses) as it arrives; slices are recognized in
order, batched with other sessions', shown as transcription events and fed to the engine as text.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import protocol as p
from . import server_events as se
from .speech import AudioInput, RateLimited

if TYPE_CHECKING:
    from .conversation import Conversation


class SpeechIn:
    def __init__(self, conversation: Conversation) -> None:
        self.conv = conversation
        self.stream: AudioInput | None = None
        self.pieces: asyncio.Queue[tuple[AudioInput, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """New rate or slicing: the next append starts a fresh stream."""
        self.stream = None

    async def append(self, event: p.AudioAppend) -> None:
        from duo.audio.errors import AudioError

        if self.stream is None:
            conv = self.conv
            td = conv.options.turn_detection
            slice_ms = td.slice_ms if isinstance(td, p.DuoTurnDetection) else 2000
            pause_ms = td.pause_ms if isinstance(td, p.DuoTurnDetection) else (td.silence_duration_ms if td else 500)
            recognizer, batcher = await conv.speech.recognizer()
            self.stream = AudioInput(conv.speech, recognizer, batcher, conv.options.input_rate, slice_ms, pause_ms,
                                     conv.settings.audio_burst_s)
            if self.task is None:
                self.task = asyncio.create_task(self._recognize())
        try:
            events = self.stream.push_base64(event.audio)
        except RateLimited as exc:
            raise p.ProtocolError("rate_limited", str(exc), event.event_id) from None
        except (AudioError, ValueError) as exc:
            raise p.ProtocolError("invalid_audio", str(exc), event.event_id, "audio") from None
        self._on_audio_events(events)

    def commit(self, event: p.AudioCommit) -> None:
        if self.stream is None:
            raise p.ProtocolError("input_audio_buffer_commit_empty", "no audio to commit", event.event_id)
        self._on_audio_events(self.stream.commit())

    def clear(self) -> None:
        if self.stream is not None:
            self.stream.clear()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _on_audio_events(self, events: list[Any]) -> None:
        from duo.audio.events import SpeechStarted, SpeechStopped

        assert self.stream is not None
        conv = self.conv
        for e in events:
            if isinstance(e, SpeechStarted):
                conv.user_started_speaking()
                conv.send(se.SpeechStarted(audio_start_ms=int(e.time_s * 1000), item_id=conv.input_item))
            elif isinstance(e, SpeechStopped):
                conv.user_stopped_speaking()
                conv.send(se.SpeechStopped(audio_end_ms=int(e.time_s * 1000), item_id=conv.input_item))
            else:
                self.pieces.put_nowait((self.stream, e))

    async def _recognize(self) -> None:
        """Slices in order: recognized (batched with other sessions), shown, then fed to the engine."""
        conv = self.conv
        while True:
            stream, piece = await self.pieces.get()
            text = await stream.recognize(piece)
            item = conv.input_item or p.new_id("item")
            if text.text:
                conv.send(se.TranscriptionDelta(item_id=item, delta=text.text))
            if text.final and text.utterance_text:
                conv.send(se.TranscriptionCompleted(item_id=item, transcript=text.utterance_text))
            if text.text:
                conv.heard(text.text, text.final)
            elif text.final:
                conv.paused()
            td = conv.options.turn_detection
            if text.final and isinstance(td, p.ServerVadTurnDetection) and td.create_response and text.utterance_text:
                conv.answer_now()

"""Server events of the session, its input audio, the conversation's items, and duo's own `duo.*` signals."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..objects import BetaSessionInfo, MessageItem, SessionInfo
from .event import ServerEvent


class SessionCreated(ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: SessionInfo | BetaSessionInfo


class SessionUpdated(ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: SessionInfo | BetaSessionInfo


class AudioCommitted(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None = None
    item_id: str | None = None


class AudioCleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str | None = None


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str | None = None


class ItemAdded(ServerEvent):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None = None
    item: MessageItem


class ItemDone(ServerEvent):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None = None
    item: MessageItem


class ItemRetrieved(ServerEvent):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: MessageItem


class ItemDeleted(ServerEvent):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class TranscriptionDelta(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta")
    item_id: str
    content_index: int = 0
    delta: str


class TranscriptionCompleted(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed")
    item_id: str
    content_index: int = 0
    transcript: str
    usage: dict[str, Any] = Field(default_factory=lambda: {"type": "duration", "seconds": 0.0})


class ItemTruncated(ServerEvent):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


class InputState(ServerEvent):
    """duo: the forecast's judgement of the input so far."""

    type: Literal["duo.input.state"] = "duo.input.state"
    item_id: str | None = None
    state: Literal["process", "ignore", "incomplete"]
    probs: dict[str, float]
    slice_text: str
    input_text: str
    forecast: str
    held: bool


class DuoSpeechStarted(ServerEvent):
    """duo: voice activity began (before DUO has judged whether it is addressed to duo)."""

    type: Literal["duo.input.speech_started"] = "duo.input.speech_started"
    audio_start_ms: int
    item_id: str | None = None


class DuoSpeechStopped(ServerEvent):
    """duo: voice activity ended."""

    type: Literal["duo.input.speech_stopped"] = "duo.input.speech_stopped"
    audio_end_ms: int
    item_id: str | None = None


class DuoDuck(ServerEvent):
    """duo: speech began over a reply being spoken: lower its volume while DUO judges the speech."""

    type: Literal["duo.output_audio.duck"] = "duo.output_audio.duck"
    response_id: str | None = None
    audio_start_ms: int


class DuoRestore(ServerEvent):
    """duo: the speech over the reply was not a turn (`ignore`, or it ended unfinished) or not speech at all
    (`not_speech`: frames too short to be speech): full volume again, the reply goes on; or the reply stopped
    (`interrupted`)."""

    type: Literal["duo.output_audio.restore"] = "duo.output_audio.restore"
    response_id: str | None = None
    reason: Literal["ignore", "incomplete", "interrupted", "ended", "not_speech"]


class DuoTranscript(ServerEvent):
    """duo: the words of one recognized slice, as heard (before DUO's judgement)."""

    type: Literal["duo.input.transcript"] = "duo.input.transcript"
    item_id: str | None = None
    text: str
    final: bool


class ContextTrimmed(ServerEvent):
    """duo: the oldest turns left the model's window."""

    type: Literal["duo.context.trimmed"] = "duo.context.trimmed"
    dropped_turns: int
    tokens_before: int
    tokens_after: int

"""Server events: one typed model per event the server sends, and their wire form.

The wire form is the model's fields in order, `type` and `event_id` first; a top-level field left None is
omitted (the objects inside, from `objects.py`, keep theirs). Clients that connect with
`OpenAI-Beta: realtime=v1` get the beta names of `BETA_NAMES`. `docs/protocol.md` describes the same events.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .objects import (
    BetaSessionInfo,
    ErrorDetail,
    FinishedResponse,
    MessageItem,
    SessionInfo,
    StartedResponse,
)
from .protocol import new_id

BETA_NAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
BETA_UNKNOWN = frozenset({"conversation.item.done"})  # GA only: beta clients get nothing for it
_BETA_PARTS = {"output_text": "text", "output_audio": "audio"}


def _beta_parts(value: Any) -> Any:
    """Content parts under their beta types (`text`, `audio`)."""
    if isinstance(value, list):
        return [_beta_parts(v) for v in value]
    if isinstance(value, dict):
        out = {k: _beta_parts(v) for k, v in value.items()}
        if out.get("type") in _BETA_PARTS:
            out["type"] = _BETA_PARTS[out["type"]]
        return out
    return value


class ServerEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str = Field(default_factory=lambda: new_id("event"))

    def wire(self, beta: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        if beta:
            data = _beta_parts(data)
            data["type"] = BETA_NAMES.get(self.type, self.type)
        return data

    def to_json(self, beta: bool = False) -> str | None:
        """The frame to send, or None for an event the client's protocol version does not have."""
        if beta and self.type in BETA_UNKNOWN:
            return None
        return json.dumps(self.wire(beta))

    def wire_json(self, beta: bool = False) -> str:
        return json.dumps(self.wire(beta))


# -- session and input ----------------------------------------------------------------------------------
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
    """duo: the speech over the reply was not a turn (`ignore`, or it ended unfinished): full volume again,
    the reply goes on; or the reply stopped (`interrupted`)."""

    type: Literal["duo.output_audio.restore"] = "duo.output_audio.restore"
    response_id: str | None = None
    reason: Literal["ignore", "incomplete", "interrupted", "ended"]


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


# -- responses ------------------------------------------------------------------------------------------
class ResponseCreated(ServerEvent):
    type: Literal["response.created"] = "response.created"
    response: StartedResponse


class OutputItemAdded(ServerEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: MessageItem


class _Part(ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    part: dict[str, Any]


class ContentPartAdded(_Part):
    type: Literal["response.content_part.added"] = "response.content_part.added"


class ContentPartDone(_Part):
    type: Literal["response.content_part.done"] = "response.content_part.done"


class _Content(ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class OutputTextDelta(_Content):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class OutputTextDone(_Content):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class OutputAudioTranscriptDelta(_Content):
    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class OutputAudioTranscriptDone(_Content):
    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class OutputAudioDelta(_Content):
    """Media: the one event an interruption may drop from the outbound queue (see `transport.Outbox`)."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str


class OutputAudioDone(_Content):
    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class OutputItemDone(ServerEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: MessageItem


class ResponseDone(ServerEvent):
    type: Literal["response.done"] = "response.done"
    response: FinishedResponse


class Error(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str, event_id: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error") -> Error:
        """`kind` is the error's `type`: `invalid_request_error` (the client's doing) or `server_error`."""
        return cls(error=ErrorDetail(type=kind, code=code, message=message, param=param, event_id=event_id))

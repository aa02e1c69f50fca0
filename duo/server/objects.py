"""The objects server events carry: the session as configured, items, content parts, responses, errors.

Nested objects keep their None fields on the wire (`"status_details": null`, `"turn_detection": null`),
except an error's detail, which omits its empty ones. `docs/protocol.md` describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from .protocol import TurnDetection


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_Out):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: int


class InputAudio(_Out):
    format: AudioFormat
    turn_detection: TurnDetection | None


class OutputAudio(_Out):
    format: AudioFormat
    voice: str


class SessionAudio(_Out):
    input: InputAudio
    output: OutputAudio


class SessionInfo(_Out):
    """The session as configured (`session.created`, `session.updated`)."""

    id: str
    object: Literal["realtime.session"] = "realtime.session"
    type: Literal["realtime"] = "realtime"
    instructions: str | None
    output_modalities: list[str]
    temperature: float
    max_output_tokens: int
    audio: SessionAudio


class InputText(_Out):
    type: Literal["input_text"] = "input_text"
    text: str


class OutputText(_Out):
    type: Literal["output_text"] = "output_text"
    text: str


class OutputAudioContent(_Out):
    type: Literal["output_audio"] = "output_audio"
    transcript: str


class UserItem(_Out):
    id: str
    type: Literal["message"] = "message"
    role: Literal["user"] = "user"
    content: list[InputText]


class AssistantItem(_Out):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed"]
    content: list[OutputText | OutputAudioContent]


class StatusDetails(_Out):
    type: str
    reason: str


class Response(_Out):
    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "incomplete"]


class StartedResponse(Response):
    output: list[AssistantItem] = Field(default_factory=list)


class FinishedResponse(Response):
    status_details: StatusDetails | None
    output: list[AssistantItem]


class ErrorDetail(_Out):
    type: str = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}

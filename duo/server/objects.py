"""The objects server events carry: the session as configured, items, content parts, responses, errors.

Nested objects keep their None fields on the wire (`"status_details": null`, `"turn_detection": null`),
except an error's detail, which omits its empty ones. `docs/protocol.md` describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionInfo(_Out):
    """The session as configured (`session.created`, `session.updated`): GA shape."""

    id: str
    object: Literal["realtime.session"] = "realtime.session"
    type: Literal["realtime"] = "realtime"
    model: str = "duo"
    instructions: str | None
    output_modalities: list[str]
    temperature: float
    max_output_tokens: int
    audio: dict[str, Any]


class BetaSessionInfo(_Out):
    """The beta shape of the same session: flat audio settings, `modalities`."""

    id: str
    object: Literal["realtime.session"] = "realtime.session"
    model: str = "duo"
    instructions: str | None
    modalities: list[str]
    voice: str
    input_audio_format: str
    output_audio_format: str
    input_audio_transcription: dict[str, Any] | None
    turn_detection: dict[str, Any] | None
    temperature: float
    max_response_output_tokens: int


class InputText(_Out):
    type: Literal["input_text"] = "input_text"
    text: str


class InputAudio(_Out):
    """A spoken user turn: the audio stays on the server, its transcript is shown."""

    type: Literal["input_audio"] = "input_audio"
    transcript: str | None


class OutputText(_Out):
    type: Literal["output_text"] = "output_text"  # beta: `text`
    text: str


class OutputAudioContent(_Out):
    type: Literal["output_audio"] = "output_audio"  # beta: `audio`
    transcript: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class MessageItem(_Out):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    status: ItemStatus = "completed"
    role: Literal["user", "assistant", "system"]
    content: list[InputText | InputAudio | OutputText | OutputAudioContent]


def AssistantItem(id: str, status: ItemStatus, content: list[Any]) -> MessageItem:
    return MessageItem(id=id, status=status, role="assistant", content=content)


class StatusDetails(_Out):
    type: str
    reason: str


class Usage(_Out):
    total_tokens: int
    input_tokens: int
    output_tokens: int


class Response(_Out):
    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "incomplete"]
    conversation_id: str | None = None  # None: out of band (`conversation: "none"`)
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    metadata: dict[str, str] | None = None


class StartedResponse(Response):
    status_details: StatusDetails | None = None
    output: list[MessageItem] = Field(default_factory=list)


class FinishedResponse(Response):
    status_details: StatusDetails | None
    output: list[MessageItem]
    usage: Usage | None = None


class ErrorDetail(_Out):
    type: str = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}

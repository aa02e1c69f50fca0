"""The wire protocol: OpenAI Realtime events (GA names, beta aliases accepted) plus `duo.*` events.

Client events are parsed into typed models here; server events are typed in `server_events.py`.
`docs/protocol.md` is the one-page description of the same thing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from duo.ids import new_id as new_id  # the wire's ids, minted as the engine mints its own


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: str | None = None


# -- turn detection -------------------------------------------------------------------------------------
class DuoTurnDetection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["duo"] = "duo"
    slice_ms: int = Field(2000, ge=500, le=4000)
    pause_ms: int = Field(500, ge=100, le=3000)
    forecast_tokens: int = Field(4, ge=1, le=16)
    process_threshold: float = Field(0.5, ge=0, le=1)
    ignore_threshold: float = Field(0.5, ge=0, le=1)
    act_before_pause: bool = False
    # An utterance whose last slice is judged `incomplete` is answered after this much more silence (null:
    # wait for more speech however long it takes).
    incomplete_timeout_ms: int | None = Field(3000, ge=200, le=60000)

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """(slice length, pause that ends an utterance) for the slicer."""
        return self.slice_ms, self.pause_ms


class ServerVadTurnDetection(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["server_vad"] = "server_vad"
    silence_duration_ms: int = Field(500, ge=100, le=3000)
    threshold: float | None = Field(None, ge=0, le=1)
    prefix_padding_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """DUO's slice length; the pause is this detector's silence."""
        return DuoTurnDetection.model_fields["slice_ms"].default, self.silence_duration_ms


TurnDetection = Annotated[DuoTurnDetection | ServerVadTurnDetection, Field(discriminator="type")]


# -- session --------------------------------------------------------------------------------------------
class AudioFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[16000, 24000] = 24000


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = Field(default=None)
    transcription: dict[str, Any] | None = None


class AudioOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    voice: str | None = None


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: AudioInput | None = None
    output: AudioOutput | None = None


class SessionPatch(BaseModel):
    """A `session.update` payload: GA fields, and the beta ones (`modalities`, `input_audio_format`, ...)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["realtime"] | None = None
    instructions: str | None = Field(None, max_length=20_000)
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    audio: AudioConfig | None = None
    input_audio_format: Literal["pcm16"] | None = None  # beta: 24 kHz PCM16
    turn_detection: TurnDetection | None = Field(default=None)  # beta position
    voice: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | Literal["inf"] | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None  # beta


# -- client events --------------------------------------------------------------------------------------
class SessionUpdate(_In):
    type: Literal["session.update"]
    session: SessionPatch


class AudioAppend(_In):
    type: Literal["input_audio_buffer.append"]
    audio: str


class AudioCommit(_In):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(_In):
    type: Literal["input_audio_buffer.clear"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "text", "output_text"]
    text: str = Field(max_length=100_000)


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart] = Field(min_length=1)


class ItemCreate(_In):
    type: Literal["conversation.item.create"]
    item: MessageItem
    previous_item_id: str | None = None


class ResponseCreate(_In):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None


class ResponseCancel(_In):
    type: Literal["response.cancel"]
    response_id: str | None = None


class ItemTruncate(_In):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = 0
    audio_end_ms: int = Field(ge=0)


class DuoInputSlice(_In):
    """duo extension: a slice of typed or externally recognized text, judged like a spoken one."""

    type: Literal["duo.input.slice"]
    text: str = Field(max_length=100_000)
    final: bool = True


ClientEvent = Annotated[
    SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate | ResponseCreate | ResponseCancel
    | ItemTruncate | DuoInputSlice,
    Field(discriminator="type"),
]
_client_events: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (SessionUpdate, AudioAppend, AudioCommit, AudioClear, ItemCreate, ResponseCreate, ResponseCancel,
              ItemTruncate, DuoInputSlice)
)


class ProtocolError(Exception):
    """A client event that cannot be applied; the session goes on."""

    def __init__(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.event_id, self.param = code, message, event_id, param


def parse_client_event(raw: str | bytes) -> Any:
    import json

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "an event is a JSON object")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    kind = data.get("type")
    if kind not in CLIENT_EVENT_TYPES:
        raise ProtocolError("unknown_event", f"unknown event type {kind!r}", event_id, "type")
    try:
        return _client_events.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ProtocolError("invalid_event", f"{kind}: {where}: {first['msg']}", event_id, where or None) from None

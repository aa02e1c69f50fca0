"""The wire protocol: OpenAI Realtime events (GA names, beta aliases accepted) plus `duo.*` events.

Client events are parsed into typed models here; server events are typed in `server_events.py`.
`docs/protocol.md` is the one-page description of the same thing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from duo.ids import new_id as new_id  # the wire's ids, minted as the engine mints its own

from .turn_detection import DuoTurnDetection as DuoTurnDetection
from .turn_detection import ServerVadTurnDetection as ServerVadTurnDetection
from .turn_detection import TurnDetection

BETA_SUBPROTOCOL = "openai-beta.realtime-v1"  # how browsers, which cannot set headers, ask for beta

MAX_DEPTH = 32  # nesting of arrays and objects in one event (the deepest event of the protocol needs 5)
MAX_ID = 256  # characters of a client-chosen id
MAX_OUTPUT_TOKENS = 4096
Id = Annotated[str, Field(max_length=MAX_ID)]


def _output_tokens(value: Any) -> int | str:
    """A reply's token limit: refused, not clamped, when out of range."""
    if value == "inf":
        return "inf"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'must be an integer from 1 to {MAX_OUTPUT_TOKENS} or "inf"')
    if not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ValueError(f'{_short(str(value))} is out of range: 1 to {MAX_OUTPUT_TOKENS}, or "inf"')
    return value


OutputTokens = Annotated[int | str, PlainValidator(_output_tokens)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: Id | None = None


# -- session --------------------------------------------------------------------------------------------
class AudioFormat(BaseModel):
    """GA audio formats: PCM16 (24 kHz, or 16 kHz for duo) or G.711 μ-law / A-law (8 kHz)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: Literal[8000, 16000, 24000] | None = None

    @model_validator(mode="after")
    def _rate_fits(self) -> AudioFormat:
        if self.type != "audio/pcm" and self.rate not in (None, 8000):
            raise ValueError(f"{self.type} is 8000 Hz")
        if self.type == "audio/pcm" and self.rate == 8000:
            raise ValueError("audio/pcm is 16000 or 24000 Hz")
        return self


BetaAudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = Field(default=None)
    transcription: dict[str, Any] | None = None


class AudioOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    voice: str | None = Field(None, max_length=64)


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: AudioInput | None = None
    output: AudioOutput | None = None


class SessionPatch(BaseModel):
    """A `session.update` payload: GA fields, and the beta ones (`modalities`, `input_audio_format`, ...).

    Fields duo has no use for (tools, tracing, noise reduction, ...) are ignored. A field whose value duo
    cannot honour is left out and named in `rejected`, so the rest of the update still applies.
    """

    model_config = ConfigDict(extra="ignore")
    type: Literal["realtime"] | None = None
    instructions: str | None = Field(None, max_length=20_000)
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    audio: AudioConfig | None = None
    input_audio_format: BetaAudioFormat | None = None  # beta
    output_audio_format: BetaAudioFormat | None = None  # beta
    turn_detection: TurnDetection | None = Field(default=None)  # beta position
    voice: str | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: OutputTokens | None = None
    max_response_output_tokens: OutputTokens | None = None  # beta
    _rejected: list[tuple[str, str]] = PrivateAttr(default_factory=list)

    @property
    def rejected(self) -> list[tuple[str, str]]:
        """(field path, why) of each field left out."""
        return self._rejected

    @model_validator(mode="wrap")
    @classmethod
    def _drop_what_fails(cls, data: Any, handler: Any) -> Any:
        """Validate; on failure leave out the innermost offending field, note it, and try again."""
        rejected: list[tuple[str, str]] = []
        for _ in range(64):
            try:
                patch = handler(data)
            except ValidationError as exc:
                if not isinstance(data, dict):
                    raise
                first = exc.errors()[0]
                data, where = _without(data, first["loc"])
                if where is None:
                    raise
                rejected.append((where, first["msg"]))
                continue
            patch._rejected = rejected
            return patch
        raise ValueError("too many invalid fields")


def _without(data: dict[str, Any], loc: tuple[Any, ...]) -> tuple[dict[str, Any], str | None]:
    """A copy of `data` without the deepest key of `loc` that it holds (union tags skipped), and its path."""
    path: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(str(part))
            node = node[part]
        elif not isinstance(node, dict):
            break
    if not path:
        return data, None
    copy: dict[str, Any] = dict(data)
    parent = copy
    for key in path[:-1]:
        parent[key] = dict(parent[key])
        parent = parent[key]
    del parent[path[-1]]
    return copy, ".".join(path)


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
    """Text content of an item (GA `input_text` / `output_text`, beta `text`); the transcript of audio."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "text", "output_text", "input_audio", "audio", "output_audio"]
    text: str | None = Field(None, max_length=100_000)
    transcript: str | None = Field(None, max_length=100_000)

    @property
    def words(self) -> str:
        return self.text if self.text is not None else self.transcript or ""


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Id | None = None
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart] = Field(min_length=1)

    @property
    def text(self) -> str:
        return " ".join(w for c in self.content if (w := c.words.strip()))


class ItemCreate(_In):
    type: Literal["conversation.item.create"]
    item: MessageItem
    previous_item_id: Id | None = None


class ItemRetrieve(_In):
    type: Literal["conversation.item.retrieve"]
    item_id: Id


class ItemDelete(_In):
    type: Literal["conversation.item.delete"]
    item_id: Id


class ResponseParams(BaseModel):
    """Per-response overrides of `response.create` (what duo honours; other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    instructions: str | None = Field(None, max_length=20_000)
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    metadata: dict[str, str] | None = None
    conversation: str | None = None  # "auto" (default) or "none": out of band, the conversation is not changed
    max_output_tokens: OutputTokens | None = None
    max_response_output_tokens: OutputTokens | None = None  # beta


class ResponseCreate(_In):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_In):
    type: Literal["response.cancel"]
    response_id: Id | None = None


class ItemTruncate(_In):
    type: Literal["conversation.item.truncate"]
    item_id: Id
    content_index: int = 0
    audio_end_ms: int = Field(ge=0)

    @field_validator("content_index")
    @classmethod
    def _one_part(cls, value: int) -> int:
        if value != 0:
            raise ValueError("an assistant item has one content part: content_index must be 0")
        return value


class DuoInputSlice(_In):
    """duo extension: a slice of typed or externally recognized text, judged like a spoken one."""

    type: Literal["duo.input.slice"]
    text: str = Field(max_length=100_000)
    final: bool = True
    # A provisional transcript of the words being said (a recognizer's partial): it replaces the previous
    # partial, and the next slice replaces it; never final.
    partial: bool = False


ClientEvent = Annotated[
    SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate | ItemRetrieve | ItemDelete
    | ResponseCreate | ResponseCancel | ItemTruncate | DuoInputSlice,
    Field(discriminator="type"),
]
_client_events: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (SessionUpdate, AudioAppend, AudioCommit, AudioClear, ItemCreate, ItemRetrieve, ItemDelete,
              ResponseCreate, ResponseCancel, ItemTruncate, DuoInputSlice)
)


class ProtocolError(Exception):
    """A client event that cannot be applied; the session goes on."""

    def __init__(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.event_id, self.param = code, message, event_id, param


def _short(text: str, limit: int = 64) -> str:
    """Client text echoed in an error, cut: an error never grows with what provoked it."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {_short(text)}")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` in `text`, found without parsing it.

    Checked before `json.loads`, whose recursion a deep enough document exhausts. Brackets inside strings
    do not count; an unbalanced text may count deeper than it is, which only refuses it sooner (it is not
    JSON either way).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for ch in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > limit:
            return True
    return False


def parse_client_event(raw: str | bytes) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid_json", f"not valid JSON: not UTF-8 ({exc.reason})") from None
    if too_deep(raw):
        raise ProtocolError("invalid_json", f"not valid JSON here: nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {_short(str(exc), 200)}") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "an event is a JSON object")
    event_id = data.get("event_id")
    event_id = event_id if isinstance(event_id, str) and len(event_id) <= MAX_ID else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_event", f"an event's type is a string, not {_short(json.dumps(kind))}",
                            event_id, "type")
    if kind not in CLIENT_EVENT_TYPES:
        raise ProtocolError("unknown_event", f"unknown event type {_short(repr(kind))}", event_id, "type")
    try:
        return _client_events.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ProtocolError("invalid_event", f"{kind}: {where}: {first['msg']}", event_id, where or None) from None

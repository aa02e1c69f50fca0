"""The client events, one typed model each (GA names; beta aliases of the payloads accepted), and their union."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from .session_config import SessionPatch
from .wire import Id, OutputTokens


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: Id | None = None


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
client_event_adapter: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (SessionUpdate, AudioAppend, AudioCommit, AudioClear, ItemCreate, ItemRetrieve, ItemDelete,
              ResponseCreate, ResponseCancel, ItemTruncate, DuoInputSlice)
)

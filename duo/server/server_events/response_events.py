"""Server events of a response: its start, its item and content parts, the streamed text and audio, its end."""

from __future__ import annotations

from typing import Any, Literal

from ..objects import FinishedResponse, MessageItem, StartedResponse
from .event import ServerEvent


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

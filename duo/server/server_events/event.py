"""The base of every server event, its wire form (GA or beta), and the error event.

The wire form is the model's fields in order, `type` and `event_id` first; a top-level field left None is
omitted (the objects inside, from `objects.py`, keep theirs). Clients that connect with
`OpenAI-Beta: realtime=v1` get the beta names of `BETA_NAMES` and the beta types of content parts.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from duo.ids import new_id

from ..objects import ErrorDetail

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


class Error(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str, event_id: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error") -> Error:
        """`kind` is the error's `type`: `invalid_request_error` (the client's doing) or `server_error`."""
        return cls(error=ErrorDetail(type=kind, code=code, message=message, param=param, event_id=event_id))

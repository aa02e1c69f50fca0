"""What every client event shares on the wire: its limits, the id and token-limit fields, the beta subprotocol."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PlainValidator

BETA_SUBPROTOCOL = "openai-beta.realtime-v1"  # how browsers, which cannot set headers, ask for beta

MAX_DEPTH = 32  # nesting of arrays and objects in one event (the deepest event of the protocol needs 5)
MAX_ID = 256  # characters of a client-chosen id
MAX_OUTPUT_TOKENS = 4096
Id = Annotated[str, Field(max_length=MAX_ID)]


def short(text: str, limit: int = 64) -> str:
    """Client text echoed in an error, cut: an error never grows with what provoked it."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _output_tokens(value: Any) -> int | str:
    """A reply's token limit: refused, not clamped, when out of range."""
    if value == "inf":
        return "inf"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'must be an integer from 1 to {MAX_OUTPUT_TOKENS} or "inf"')
    if not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ValueError(f'{short(str(value))} is out of range: 1 to {MAX_OUTPUT_TOKENS}, or "inf"')
    return value


OutputTokens = Annotated[int | str, PlainValidator(_output_tokens)]

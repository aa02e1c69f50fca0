"""What a session tells its owner. Plain dataclasses: the server maps them onto the wire protocol."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .config import State


class ResponseStatus(StrEnum):
    COMPLETED = "completed"  # the model ended its turn
    INTERRUPTED = "interrupted"  # a new input was promoted while it spoke (barge-in)
    CANCELLED = "cancelled"  # the client asked it to stop
    LENGTH = "length"  # max_new_tokens or the context window was reached
    WITHDRAWN = "withdrawn"  # taken back unheard: the user went on speaking (`Session.withdraw`)


@dataclass(frozen=True)
class Event:
    session_id: str


@dataclass(frozen=True)
class StateDecided(Event):
    """The forecast judged the input so far. `held` marks a `process` waiting for the speaker's pause."""

    state: State
    probs: dict[State, float]
    slice_text: str
    input_text: str
    forecast: str
    held: bool = False


@dataclass(frozen=True)
class ResponseStarted(Event):
    response_id: str
    input_text: str
    request: str | None = None  # the tag of the `respond` that started it (None: DUO's own decision)
    speculative: bool = False  # started on a `process` before the speaker's pause (may be withdrawn)


@dataclass(frozen=True)
class TextDelta(Event):
    response_id: str
    delta: str


@dataclass(frozen=True)
class ResponseDone(Event):
    response_id: str
    status: ResponseStatus
    text: str  # everything produced; for an interruption, up to the moment it was cut
    num_tokens: int = 0


@dataclass(frozen=True)
class ContextTrimmed(Event):
    """The oldest turns were dropped so the conversation fits the model's window (instructions kept)."""

    dropped_turns: int
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True)
class Error(Event):
    code: str
    message: str
    fatal: bool = False  # the session was closed because of it


@dataclass(frozen=True)
class SessionClosed(Event):
    reason: str = "closed"

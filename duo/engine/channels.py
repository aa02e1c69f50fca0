"""What a session's channels hold: the input channel being judged, a reply, and the facts the state machine needs.

Plain state with the few operations that keep it consistent (a rollback always returns the input channel to
the user's words); the transitions between them live in `turn_taking.py` and `replies.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .config import State
from .detokenizer import IncrementalDetokenizer
from .sequence import Sequence


class Need(Enum):
    """What a sequence in a tick wants from its logits."""

    PREFILL = 0  # nothing: it only writes KV
    OUTPUT = 1  # the reply's next token
    FORECAST = 2  # the input channel's next forecast token (and, first, the state)


@dataclass(frozen=True)
class Vocab:
    """Backbone facts the state machine needs."""

    tokenizer: Any
    prediction_id: int
    state_ids: dict[State, int]
    stop_ids: frozenset[int]
    max_context: int


@dataclass
class InputChannel:
    """The user's words so far in a forked channel; a judgement appends `<|prediction|>` and the forecast,
    and is always rolled back to the words (`kept`), so the cache equals a prefill of the words alone."""

    seq: Sequence
    prediction_id: int
    kept: int = 0  # own tokens that survive a rollback (framing + slices)
    texts: list[str] = field(default_factory=list)
    final: bool = False  # the newest slice ended at the speaker's pause
    forecast: list[int] = field(default_factory=list)
    probs: dict[State, float] | None = None
    held: bool = False  # judged `process`, waiting for the pause
    provisional: bool = False  # the newest words are a partial transcript, replaced by the next slice
    tail: int = 0  # own tokens before the newest words (where a provisional tail is cut back to)

    @property
    def settled(self) -> list[str]:
        """The words of every slice but a provisional tail."""
        return self.texts[:-1] if self.provisional else self.texts

    @property
    def judging(self) -> bool:
        """A judgement is queued or in flight."""
        return len(self.seq) > self.kept

    def rollback(self) -> None:
        """Back to the words: `<|prediction|>` and any forecast leave the channel."""
        self.seq.truncate(self.kept)

    def judge(self) -> None:
        """Forecast the state of the words so far (again, if a judgement was in flight)."""
        self.rollback()
        self.seq.append([self.prediction_id])
        self.forecast, self.probs = [], None

    def add(self, ids: list[int], text: str, final: bool, judge: bool, partial: bool = False) -> bool:
        """A new slice of words; it supersedes a judgement still running and replaces a provisional tail.

        A slice whose tokens are the provisional tail's settles it in place (returns True): its KV and its
        judgement, done or in flight, stand.
        """
        if self.provisional and self.seq.tokens[self.tail : self.kept] == ids:
            self.provisional, self.final = partial, final
            return True
        self.drop_tail()
        self.rollback()
        self.tail = len(self.seq)
        self.seq.append(ids)
        self.kept = len(self.seq)
        self.texts.append(text.strip())
        self.final, self.held, self.provisional = final, False, partial
        if judge:
            self.judge()
        else:
            self.forecast, self.probs = [], None
        return False

    def drop_tail(self) -> None:
        """Cut a provisional tail back off: the cache is again a prefill of the settled words."""
        if self.provisional:
            self.rollback()
            self.seq.truncate(self.tail)
            self.kept, self.provisional, self.held = self.tail, False, False
            self.texts.pop()
            self.forecast, self.probs = [], None


@dataclass
class Revocable:
    """What undoes the newest promotion: the input channel it consumed and the sequence it continued."""

    response_id: str
    input: InputChannel
    old: Sequence  # holds the session's reference while the record lives
    turn: int  # index of the user turn the promotion appended


@dataclass
class Reply:
    id: str
    seq: Sequence
    start: int  # own index of the first generated token
    input_text: str
    detok: IncrementalDetokenizer
    end: int | None = None  # once ended: own index where the reply's tokens in context stop (its close follows)
    turn: int = -1  # once ended: index of its assistant turn in `Session.turns`

"""One conversation under DUO decoding: a prefix, an output channel and at most one input channel.

The session owns the state machine of design §2 — fork, forecast, the three transitions, promotion —
and turns each tick's chosen tokens into events. It never runs the model: the engine collects every
session's pending work into one forward pass and hands back one token (and the state probabilities)
per sequence that asked for logits. This is its public face; the transitions live in the layers below
(`turn_taking.py`, `replies.py`, over the state in `session_state.py`).
"""

from __future__ import annotations

from . import events as ev
from .channels import InputChannel, Need, Reply, Vocab
from .sequence import Sequence
from .session_state import CLOSED_KEPT, SLICE_RESERVE
from .turn_taking import TurnTaking

__all__ = ["CLOSED_KEPT", "SLICE_RESERVE", "InputChannel", "Need", "Reply", "Session", "Vocab"]


class Session(TurnTaking):
    """One conversation's public face: the commands its owner queues and the hooks the engine calls."""

    # -- called by the owner, any time: queued, applied at the start of the next tick --------------------
    def push_slice(self, text: object, final: bool = True, judge: bool = True, partial: bool = False) -> None:
        """A slice of the user's speech as text. `final`: it ended at a pause, not at the length limit.

        `judge=False` appends it without a forecast: the caller decides when to answer (`respond`), as
        pause-based turn taking and client-committed turns do. `partial`: a provisional transcript of the
        words being spoken; the next slice replaces it exactly (rolled back to the settled words, which
        stay cached), or settles it in place when it holds the same tokens.
        """
        self.inbox.append(("slice", (text, final, judge, partial)))

    def withdraw(self, response_id: str | None = None) -> None:
        """The user went on speaking: take back the reply that answered their words, unheard.

        Only the newest turn can be taken back, and only while nothing came after it: its tokens leave the
        cache and the words are the input channel again, so what the user says next joins the same turn.
        A reply it had interrupted stays ended. Ends it with `ResponseDone` status `withdrawn`. With no
        `response_id`, whichever reply the newest promotion started, if any (none: nothing happens).
        """
        self.inbox.append(("withdraw", response_id))

    def respond(self, request: str | None = None) -> None:
        """Answer the input heard so far now, without waiting for a `process` forecast; with no input, the
        assistant speaks next all the same. `request` tags the reply's `ResponseStarted`."""
        self.inbox.append(("respond", request))

    def pause(self) -> None:
        """The speaker paused after a slice that was cut by the length limit."""
        self.inbox.append(("pause", None))

    def cancel(self) -> None:
        self.inbox.append(("cancel", None))

    def truncate(self, response_id: str, chars: int) -> None:
        """The user heard only the first `chars` characters of an ended reply: keep only those in context.

        Works whatever came after it (a barge-in being judged, a new reply running or done): what follows
        the cut is prefilled again over the shortened turn.
        """
        self.inbox.append(("truncate", (response_id, chars)))

    # -- called by the engine between ticks ------------------------------------------------------------
    def has_work(self) -> bool:
        return bool(self.inbox) or any(s.num_pending for s in self._live() + self.stale)

    def apply_inbox(self) -> list[ev.Event]:
        out: list[ev.Event] = []
        while self.inbox:
            kind, arg = self.inbox.popleft()
            if kind == "slice":
                out += self._on_slice(*arg)
            elif kind == "pause":
                out += self._on_pause()
            elif kind == "cancel" and self.reply is not None:
                out += self._finish(ev.ResponseStatus.CANCELLED)
            elif kind == "respond":
                out += self._respond(arg)
            elif kind == "truncate":
                self._settle()
                self._truncate(*arg)
            elif kind == "withdraw":
                out += self._withdraw(arg)
        return out

    def work(self) -> list[tuple[Sequence, Need]]:
        items = []
        if self.stale:  # earlier turns re-closed by a truncate: before what sees them
            items = [(seq, Need.PREFILL) for seq in self.stale if seq.refs and seq.num_pending]
            self.stale = []
        if self.last.num_pending:
            items.append((self.last, Need.OUTPUT if self.reply else Need.PREFILL))
        if self.input is not None and self.input.seq.num_pending:  # judged: <|prediction|> follows the kept tokens
            items.append((self.input.seq, Need.FORECAST if self.input.judging else Need.PREFILL))
        return items

    def advance(self, need: Need, token: int, probs: list[float]) -> list[ev.Event]:
        if need is Need.OUTPUT:
            return self._on_output_token(token)
        if need is Need.FORECAST:
            return self._on_forecast_token(token, probs)
        return []

    def history(self) -> list[dict[str, str]]:
        """The conversation as the context holds it, a running reply ended where it is (for a new session)."""
        turns = list(self.turns)
        if self.reply is not None:
            generated = self.reply.seq.tokens[self.reply.start :]
            turns.append({"role": "assistant", "content": self._text(generated)})
        return turns[: len(turns) // 2 * 2]

    def close(self) -> None:
        """Return every KV block this session holds."""
        self._settle()
        for seq in self._live():
            seq.release()
        self.reply = self.input = None

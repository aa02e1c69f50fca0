"""The input channel's turn taking (design §2): fork, forecast, the three transitions, promotion, withdrawal.

Each slice of the user's words forks or extends the input channel; a forecast judges them (`ignore`,
`incomplete`, `process`) and is always rolled back to the words; `process` promotes the channel to the
output channel, and the newest promotion can be taken back while nothing came after it.
"""

from __future__ import annotations

from duo.ids import new_id

from . import events as ev
from .channels import InputChannel, Reply, Revocable
from .config import State
from .detokenizer import IncrementalDetokenizer
from .replies import Replies
from .sequence import Sequence

__all__ = ["TurnTaking"]


class TurnTaking(Replies):
    """The user's slices into the input channel, its judgement, and its promotion to the output channel."""

    def _on_slice(self, text: object, final: bool, judge: bool = True, partial: bool = False) -> list[ev.Event]:
        if not isinstance(text, str):
            return self._error("invalid_input", f"a slice must be text, got {type(text).__name__}")
        self._settle()
        ids = self.framing.slice_ids(text, first=self.input is None or not self.input.settled)
        if not ids:
            if self.input is not None and not partial:
                self.input.drop_tail()  # the words it held were not said after all
            return self._on_pause() if final else []
        out: list[ev.Event] = []
        overhead = len(self.framing.assistant_close) + len(self.framing.user_open) + len(
            self.framing.user_close_assistant_open) + self.config.forecast_tokens + 1
        if len(ids) + overhead + len(self.framing.system) > self.vocab.max_context:
            return self._error("slice_too_long", f"a slice of {len(ids)} tokens exceeds the context window")
        if self.max_slice_tokens is not None and len(ids) > self.max_slice_tokens:
            return self._error("slice_too_long",
                               f"a slice of {len(ids)} tokens exceeds the limit of {self.max_slice_tokens}")
        if self.input is None:
            out += self._fork()
        inp = self.input
        assert inp is not None
        if inp.seq.total_len + len(ids) + overhead > self.vocab.max_context:
            return [*out, *self._error("context_full", "the conversation has no room for this slice")]
        if inp.add(ids, text, final, judge, partial) and final and inp.held:
            out += self._promote()  # the judgement of these very words was `process`, waiting for this pause
        return out

    def _fork(self) -> list[ev.Event]:
        out = [] if self.reply else self._trim_context()
        prefix = self.framing.assistant_close if self.reply else []
        seq = Sequence(self.kv, [*prefix, *self.framing.user_open], parent=self.last)
        self.input = InputChannel(seq, self.vocab.prediction_id, kept=len(seq))
        return out

    def _respond(self, request: str | None = None) -> list[ev.Event]:
        if self.input is None:
            self._fork()  # nothing new was said: an empty user turn, and the assistant goes on
        assert self.input is not None
        self.input.rollback()  # a forecast in flight is moot
        return self._promote(request)

    def _on_pause(self) -> list[ev.Event]:
        inp = self.input
        if inp is None:
            return []
        inp.final = True
        return self._promote() if inp.held else []

    def _on_forecast_token(self, token: int, probs: list[float]) -> list[ev.Event]:
        inp = self.input
        assert inp is not None
        if not inp.forecast:
            inp.probs = dict(zip(self.vocab.state_ids, probs, strict=True))
        inp.forecast.append(token)
        if len(inp.forecast) < self.config.forecast_tokens:
            inp.seq.append([token])
            return []
        assert inp.probs is not None
        state = self.config.thresholds.decide(inp.probs)
        inp.rollback()
        held = state is State.PROCESS and not inp.final and self.config.process_waits_for_pause
        speculate = held and self.config.speculate and self.reply is None
        decided = ev.StateDecided(
            self.id, state, dict(inp.probs), inp.texts[-1], " ".join(inp.texts),
            self.vocab.tokenizer.decode(inp.forecast), held=held,
        )
        if state is State.IGNORE:
            inp.seq.release()
            self.input = None
        elif state is State.PROCESS:
            inp.held = held
            if not held or speculate:
                return [decided, *self._promote(speculative=speculate)]
        return [decided]

    def _promote(self, request: str | None = None, speculative: bool = False) -> list[ev.Event]:
        """The input channel becomes the output channel; a reply in progress is cut where it forked.

        `speculative`: the words were judged `process` before the speaker's pause; the reply starts now and
        the caller keeps it unheard until the pause confirms the turn (or takes it back, `withdraw`).
        """
        inp, old = self.input, self.last
        assert inp is not None
        out: list[ev.Event] = []
        self._settle()
        revocable = inp.seq.parent is old
        if self.reply is not None:
            out += self._finish(ev.ResponseStatus.INTERRUPTED, context_len=inp.seq.parent_len)
        if inp.seq.parent is old and inp.seq.parent_len < len(old):
            old.truncate(inp.seq.parent_len)  # what the new turn never saw leaves memory too
            ended = self.closed[-1] if self.closed else None
            if ended is not None and ended.seq is old and ended.end is not None and ended.end > len(old):
                self._set_end(ended, len(old))  # it ended after the input forked: the context keeps the fork
        inp.seq.append(self.framing.user_close_assistant_open)
        user_text = " ".join(inp.texts)
        self.turns.append({"role": "user", "content": user_text})
        self.last, self.input = inp.seq, None
        rid = new_id("resp")
        self.reply = Reply(rid, inp.seq, len(inp.seq), user_text, IncrementalDetokenizer(self.vocab.tokenizer))
        if revocable:  # the session's reference on the old sequence moves to the withdrawal record
            self.revocable = Revocable(rid, inp, old, len(self.turns) - 1)
        else:
            old.release()
        return [*out, ev.ResponseStarted(self.id, rid, user_text, request, speculative)]

    def _settle(self) -> None:
        """The newest promotion stands: the old sequence's reference goes."""
        if self.revocable is not None:
            self.revocable.old.release()
            self.revocable = None

    def _withdraw(self, response_id: str | None) -> list[ev.Event]:
        """Undo the promotion that started `response_id` (see `withdraw`)."""
        rec, self.revocable = self.revocable, None
        if response_id is None:
            if rec is None:
                return []
            response_id = rec.response_id
        reply = self.reply if self.reply is not None else (self.closed[-1] if self.closed else None)
        if rec is None or rec.response_id != response_id or reply is None or reply.id != response_id:
            if rec is not None:
                rec.old.release()
            return self._error("not_withdrawn", f"response {response_id} can no longer be taken back")
        out = self.drain_text()  # what it said so far, as if decoded tick by tick
        tokens = reply.detok.num_tokens
        if self.reply is reply:
            self.reply = None
        else:
            self.closed.pop()
        inp = rec.input
        inp.seq.truncate(inp.kept)
        del self.turns[rec.turn :]
        self.last, self.input = rec.old, inp
        inp.final = False
        return [*out, ev.ResponseDone(self.id, response_id, ev.ResponseStatus.WITHDRAWN, reply.detok.text, tokens)]

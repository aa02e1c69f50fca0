"""The output channel: a reply's tokens and its end, and the edits to the context behind ended replies.

A reply streams until a stop token or a limit, or until a promotion interrupts it; ending closes its turn in
context. Later, `truncate` cuts an ended reply to what the user heard, and the window drops the oldest turns
when the next one might not fit (`_trim_context`).
"""

from __future__ import annotations

from . import events as ev
from .channels import Reply
from .sequence import Sequence
from .session_state import SessionState

__all__ = ["Replies"]


class Replies(SessionState):
    """Generating and ending the reply, and cutting ended ones (and the window) back."""

    def _on_output_token(self, token: int) -> list[ev.Event]:
        reply = self.reply
        assert reply is not None
        if token in self.vocab.stop_ids and not self.config.sampling.ignore_eos:
            return self._finish(ev.ResponseStatus.COMPLETED)
        reply.seq.append([token])
        reply.detok.add(token)  # decoded by `drain_text`, while the next tick runs
        room = self.vocab.max_context - len(self.framing.assistant_close) - 1
        if reply.detok.num_tokens >= self.config.sampling.max_new_tokens or reply.seq.total_len >= room:
            return self._finish(ev.ResponseStatus.LENGTH)
        return []

    def drain_text(self) -> list[ev.Event]:
        """The text of the reply's tokens not yet decoded, as a delta."""
        reply = self.reply
        if reply is None or not reply.detok.queued:
            return []
        delta = reply.detok.drain()
        return [ev.TextDelta(self.id, reply.id, delta)] if delta else []

    def _finish(self, status: ev.ResponseStatus, context_len: int | None = None) -> list[ev.Event]:
        """End the reply; close its turn in context (unless a promoted input already continues it)."""
        reply = self.reply
        assert reply is not None
        self.reply = None
        out: list[ev.Event] = []
        if rest := reply.detok.flush():
            out.append(ev.TextDelta(self.id, reply.id, rest))
        reply.end = context_len if context_len is not None else len(reply.seq)
        reply.turn = len(self.turns)
        self.turns.append({"role": "assistant", "content": self._text(reply.seq.tokens[reply.start : reply.end])})
        self.closed.append(reply)
        if status is not ev.ResponseStatus.INTERRUPTED:  # the template's own end of turn, whatever stopped it
            reply.seq.append(self.framing.assistant_close)
        return [*out, ev.ResponseDone(self.id, reply.id, status, reply.detok.text, reply.detok.num_tokens)]

    def _truncate(self, response_id: str, chars: int) -> None:
        """Cut an ended reply to its first `chars` characters (what was played) and close the turn there.

        Its kept tokens stay cached. Every later sequence of the chain (the barge-in's input channel, the
        new reply) saw the cut tokens and sits at positions after them, so it continues the cut turn now and
        all of its own tokens are prefilled again in the next tick: exact, and only the tokens after the cut.
        """
        reply = next((r for r in self.closed if r.id == response_id), None)
        chain = self._chain()
        if reply is None or reply.end is None or reply.seq not in chain:
            return  # unknown, still running, or trimmed out of the window
        tokens = reply.seq.tokens[reply.start : reply.end]
        keep = len(tokens)
        while keep and len(self._text(tokens[:keep])) > chars:
            keep -= 1
        if keep == len(tokens):
            return
        seq, cut, close = reply.seq, reply.start + keep, self.framing.assistant_close
        below = chain[chain.index(seq) + 1 :]
        # a sequence that forked while the reply was running opens with the close itself
        child_closes = bool(below) and below[0].parent_len <= reply.end
        seq.truncate(cut)
        if seq is self.last:
            seq.append(close)
            if self.input is not None:
                self._refork_input(drop=len(close) if child_closes else 0)
        else:
            if not child_closes:
                seq.append(close)
                self.stale.append(seq)
            for i, later in enumerate(below):
                later.reattach(len(seq) if i == 0 else None)
            if self.input is not None:
                self._restart_forecast()
        self._set_end(reply, cut)

    def _set_end(self, reply: Reply, end: int) -> None:
        reply.end = end
        self.turns[reply.turn] = {"role": "assistant", "content": self._text(reply.seq.tokens[reply.start : end])}

    def _refork_input(self, drop: int) -> None:
        """Fork the input channel again from the (re-closed) newest sequence, without its first `drop` tokens."""
        inp = self.input
        assert inp is not None
        judging = inp.judging
        own = inp.seq.tokens[drop : inp.kept]
        inp.seq.release()
        inp.seq = Sequence(self.kv, own, parent=self.last)
        inp.kept, inp.tail = len(inp.seq), max(0, inp.tail - drop)
        if judging:
            inp.judge()

    def _restart_forecast(self) -> None:
        """A forecast in flight read the old context: judge the slice again from `<|prediction|>`."""
        inp = self.input
        assert inp is not None
        if inp.judging:
            inp.judge()

    def _trim_context(self) -> list[ev.Event]:
        """Drop the oldest turns (instructions kept) when the next turn might not fit the window."""
        before = self.last.total_len
        if before + self.headroom <= self.vocab.max_context:
            return []
        turns = self.turns
        while turns and len(self.framing.history(turns)) + self.headroom > self.vocab.max_context:
            turns = turns[2:]
        dropped = (len(self.turns) - len(turns)) // 2
        self.last.release()
        self.turns, self.last = turns, Sequence(self.kv, self.framing.history(turns))
        self.closed.clear()  # turn indices moved; the replies left the chain
        return [ev.ContextTrimmed(self.id, dropped, before, len(self.last))]

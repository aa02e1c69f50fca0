"""One conversation under DUO decoding: a prefix, an output channel and at most one input channel.

The session owns the state machine of design §2 — fork, forecast, the three transitions, promotion —
and turns each tick's chosen tokens into events. It never runs the model: the engine collects every
session's pending work into one forward pass and hands back one token (and the state probabilities)
per sequence that asked for logits.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from duo.ids import new_id

from . import events as ev
from .channels import InputChannel, Need, Reply, Revocable, Vocab
from .config import SessionConfig, State
from .detokenizer import IncrementalDetokenizer
from .framing import ChatFraming
from .kv_cache import KVCache
from .sequence import Sequence

__all__ = ["CLOSED_KEPT", "SLICE_RESERVE", "InputChannel", "Need", "Reply", "Session", "Vocab"]

SLICE_RESERVE = 128  # tokens kept free for the user's next utterance when trimming the context
CLOSED_KEPT = 32  # ended replies that can still be truncated


class Session:
    def __init__(self, sid: str, config: SessionConfig, framing: ChatFraming, vocab: Vocab, kv: KVCache,
                 history: list[dict[str, str]] | None = None, max_slice_tokens: int | None = None) -> None:
        self.id = sid
        self.config = config
        self.max_slice_tokens = max_slice_tokens
        self.framing = framing
        self.vocab = vocab
        self.kv = kv
        self.turns: list[dict[str, str]] = list(history or [])
        self.headroom = config.sampling.max_new_tokens + SLICE_RESERVE + config.forecast_tokens
        if len(framing.system) + self.headroom > vocab.max_context:
            raise ValueError("instructions plus max_new_tokens do not fit the model's context window")
        self.last = Sequence(kv, framing.history(self.turns))  # the conversation's newest sequence
        self.reply: Reply | None = None
        self.closed: deque[Reply] = deque(maxlen=CLOSED_KEPT)  # ended replies, newest last
        self.stale: list[Sequence] = []  # earlier turns re-closed by a truncate, prefilled in the next tick
        self.input: InputChannel | None = None
        self.revocable: Revocable | None = None  # the newest promotion, while it can still be taken back
        self.inbox: deque[tuple[str, Any]] = deque()
        self.generator: torch.Generator | None = None  # a seeded session's own draws (`sampler.py`)
        if not config.sampling.greedy and config.sampling.seed is not None:
            self.generator = torch.Generator(device=kv.k[0].device)
            self.generator.manual_seed(config.sampling.seed)

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
        items = [(seq, Need.PREFILL) for seq in self.stale if seq.refs and seq.num_pending]  # before what sees them
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

    def _live(self) -> list[Sequence]:
        return [self.last] + ([self.input.seq] if self.input else [])

    def _chain(self) -> list[Sequence]:
        """Every sequence of the conversation, root first, the input channel last."""
        return [seq for seq, _ in self.last.ancestry()] + self._live()

    def _text(self, tokens: list[int]) -> str:
        return self.vocab.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    # -- input channel ---------------------------------------------------------------------------------
    def _error(self, code: str, message: str) -> list[ev.Event]:
        return [ev.Error(self.id, code, message)]

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
        tokens = len(reply.detok.ids)
        if self.reply is reply:
            self.reply = None
        else:
            self.closed.pop()
        inp = rec.input
        inp.seq.truncate(inp.kept)
        del self.turns[rec.turn :]
        self.last, self.input = rec.old, inp
        inp.final = False
        return [ev.ResponseDone(self.id, response_id, ev.ResponseStatus.WITHDRAWN, reply.detok.text, tokens)]

    # -- output channel --------------------------------------------------------------------------------
    def _on_output_token(self, token: int) -> list[ev.Event]:
        reply = self.reply
        assert reply is not None
        if token in self.vocab.stop_ids and not self.config.sampling.ignore_eos:
            return self._finish(ev.ResponseStatus.COMPLETED)
        reply.seq.append([token])
        delta = reply.detok.push(token)
        out: list[ev.Event] = [ev.TextDelta(self.id, reply.id, delta)] if delta else []
        room = self.vocab.max_context - len(self.framing.assistant_close) - 1
        if len(reply.detok.ids) >= self.config.sampling.max_new_tokens or reply.seq.total_len >= room:
            out += self._finish(ev.ResponseStatus.LENGTH)
        return out

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
        return [*out, ev.ResponseDone(self.id, reply.id, status, reply.detok.text, len(reply.detok.ids))]

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

"""The DUO engine: owns the sessions and runs ticks (schedule, one forward, postprocess).

A tick gathers every session's pending work — slice prefills, forecast tokens, each output channel's
next token, the close of a finished turn — and runs it as ONE forward pass, whatever the number of
sessions and channels. The time-division baseline (design §2.7) serves output channels and input channels
in two sequential passes instead. The engine does no I/O: callers push input into sessions and get
events back from `step`; `loop.py` drives it from asyncio.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass

from . import events as ev
from .config import EngineConfig, Mode, SessionConfig
from .framing import DEFAULT_INSTRUCTIONS, ChatFraming
from .kv_cache import KVCache
from .loader import Backbone
from .model_runner import ModelRunner
from .sampler import choose
from .sequence import Sequence
from .session import Need, Session, Vocab

log = logging.getLogger(__name__)


@dataclass
class TickStats:
    forward_passes: int = 0
    tokens: int = 0
    sessions: int = 0


def _turn_markers(tokenizer: object) -> frozenset[int]:
    """A special token that opens a turn ends the reply too: a model that skips its end-of-turn token
    and starts the user's next turn (`<|im_start|>user`) must not speak it."""
    opener = ChatFraming(tokenizer).user_open[:1]
    return frozenset(t for t in opener if t in tokenizer.all_special_ids)  # type: ignore[attr-defined]


class Engine:
    def __init__(self, backbone: Backbone, config: EngineConfig | None = None) -> None:
        self.backbone = backbone
        self.config = config or EngineConfig()
        self.kv = KVCache.for_model(backbone.model, block_size=self.config.block_size,
                                    num_blocks=self.config.initial_blocks, max_blocks=self.config.max_blocks,
                                    memory_fraction=self.config.kv_memory_fraction)
        self.runner = ModelRunner(backbone.model, self.kv, cuda_graphs=self.config.cuda_graphs)
        self.vocab = Vocab(
            tokenizer=backbone.tokenizer,
            prediction_id=backbone.prediction_id,
            state_ids=backbone.state_ids,
            stop_ids=backbone.stop_ids | _turn_markers(backbone.tokenizer),
            max_context=min(self.config.max_context or backbone.max_context, backbone.max_context),
        )
        self.sessions: dict[str, Session] = {}
        self._joining: deque[Session] = deque()
        self._leaving: deque[str] = deque()
        self._framings: dict[str, ChatFraming] = {}
        self.ticks = 0
        self.last_tick = TickStats()

    @property
    def forward_passes(self) -> int:
        return self.runner.forward_passes

    def open_session(self, config: SessionConfig | None = None,
                     history: list[dict[str, str]] | None = None, session_id: str | None = None) -> Session:
        """A new session; it joins at the next tick. Raises ValueError on bad config or history."""
        config = config or SessionConfig()
        if len(self.sessions) + len(self._joining) >= self.config.max_sessions:
            raise RuntimeError(f"session limit reached ({self.config.max_sessions})")
        instructions = config.instructions if config.instructions is not None else DEFAULT_INSTRUCTIONS
        framing = self._framings.get(instructions)
        if framing is None:
            framing = self._framings[instructions] = ChatFraming(self.backbone.tokenizer, instructions)
        sid = session_id or "sess_" + uuid.uuid4().hex[:20]
        session = Session(sid, config, framing, self.vocab, self.kv, history)
        self._joining.append(session)
        return session

    def close_session(self, session_id: str) -> None:
        """The session leaves at the next tick and its KV returns to the pool."""
        self._leaving.append(session_id)

    def has_work(self) -> bool:
        return bool(self._joining or self._leaving) or any(s.has_work() for s in self.sessions.values())

    def step(self) -> list[ev.Event]:
        """One tick. Returns the events it produced, in order."""
        events: list[ev.Event] = []
        self.last_tick = TickStats()
        while self._joining:
            session = self._joining.popleft()
            self.sessions[session.id] = session
        while self._leaving:
            session = self.sessions.pop(self._leaving.popleft(), None)
            if session is not None:
                session.close()
                events.append(ev.SessionClosed(session.id))

        work: list[tuple[Session, Sequence, Need]] = []
        for session in list(self.sessions.values()):
            try:
                events += session.apply_inbox()
                work += [(session, seq, need) for seq, need in session.work()]
            except Exception as exc:  # one session's failure never stops the others
                events += self._fail(session, exc)
        if not work:
            return events

        if self.config.mode is Mode.DUO:
            groups = [work]
        else:
            groups = [[w for w in work if w[2] is not Need.FORECAST], [w for w in work if w[2] is Need.FORECAST]]
        stats = TickStats(self.forward_passes, sum(len(seq.pending) for _, seq, _ in work),
                          len({s.id for s, _, _ in work}))
        for group in filter(None, groups):
            events += self._run(group)
        stats.forward_passes = self.forward_passes - stats.forward_passes
        self.ticks += 1
        self.last_tick = stats
        return events

    def _run(self, group: list[tuple[Session, Sequence, Need]]) -> list[ev.Event]:
        logits = self.runner.run([seq for _, seq, _ in group])
        params = [s.config.sampling if need is Need.OUTPUT else None for s, _, need in group]
        gens = [s.generator if need is Need.OUTPUT else None for s, _, need in group]
        tokens, probs = choose(logits, params, gens, list(self.vocab.state_ids.values()))
        events: list[ev.Event] = []
        for (session, _, need), token, p in zip(group, tokens, probs, strict=True):
            if session.id not in self.sessions:
                continue
            try:
                events += session.advance(need, token, p)
            except Exception as exc:
                events += self._fail(session, exc)
        return events

    def _fail(self, session: Session, exc: Exception) -> list[ev.Event]:
        log.exception("session=%s event=session_failed", session.id)
        self.sessions.pop(session.id, None)
        session.close()
        return [ev.Error(session.id, "internal_error", f"{type(exc).__name__}: {exc}", fatal=True),
                ev.SessionClosed(session.id, reason="error")]

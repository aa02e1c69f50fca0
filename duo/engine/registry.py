"""The engine's sessions: those a tick serves, those joining at the next tick and those leaving at it.

Owners open and close sessions between ticks, but the set a tick serves changes only at its start
(`turnover`), so no tick sees a session half opened or half closed. Sessions with the same instructions
share one `ChatFraming` (the framing tokenizes the instructions once).
"""

from __future__ import annotations

import logging
from collections import deque

from duo.ids import new_id

from . import events as ev
from .channels import Vocab
from .config import SessionConfig
from .framing import DEFAULT_INSTRUCTIONS, ChatFraming
from .kv_cache import KVCache
from .session import Session

log = logging.getLogger(__name__)


class SessionRegistry:
    def __init__(self, tokenizer: object, vocab: Vocab, kv: KVCache, *, max_sessions: int,
                 max_slice_tokens: int | None) -> None:
        self.live: dict[str, Session] = {}  # served by the ticks
        self.joining: deque[Session] = deque()
        self._leaving: deque[str] = deque()
        self._framings: dict[str, ChatFraming] = {}
        self._tokenizer, self._vocab, self._kv = tokenizer, vocab, kv
        self.max_sessions, self._max_slice_tokens = max_sessions, max_slice_tokens

    @property
    def changing(self) -> bool:
        """Sessions wait to join or to leave: the next tick has work even if no session does."""
        return bool(self.joining or self._leaving)

    def open(self, config: SessionConfig, history: list[dict[str, str]] | None,
             session_id: str | None) -> Session:
        """A new session under `session_id` (the caller's, so both log one id); it joins at the next turnover.

        Raises ValueError on bad config or history or a taken id, RuntimeError at the session limit.
        """
        if len(self.live) + len(self.joining) >= self.max_sessions:
            raise RuntimeError(f"session limit reached ({self.max_sessions})")
        sid = session_id or new_id("sess")
        if self.find(sid) is not None:
            raise ValueError(f"session {sid!r} is already open")
        session = self._new(sid, config, history)
        self.joining.append(session)
        return session

    def replace(self, session_id: str, config: SessionConfig, history: list[dict[str, str]] | None) -> Session:
        """The session under new settings, continuing its conversation (or `history`); KeyError if unknown.
        Settings that fail leave the old session as it was (ValueError)."""
        old = self.find(session_id)
        if old is None:
            raise KeyError(session_id)
        new = self._new(session_id, config, old.history() if history is None else history)
        old.close()
        if self.live.get(session_id) is old:
            self.live[session_id] = new
        else:
            self.joining[self.joining.index(old)] = new
        return new

    def find(self, session_id: str) -> Session | None:
        return self.live.get(session_id) or next((s for s in self.joining if s.id == session_id), None)

    def leave(self, session_id: str) -> None:
        """The session leaves at the next turnover."""
        self._leaving.append(session_id)

    def turnover(self) -> tuple[list[ev.Event], bool]:
        """Joining sessions join and leaving ones close (their KV returns to the pool, the text they had not
        sent yet goes first). Returns the events, and whether any session left."""
        events: list[ev.Event] = []
        while self.joining:
            session = self.joining.popleft()
            self.live[session.id] = session
        left = bool(self._leaving)
        while self._leaving:
            session = self.live.pop(self._leaving.popleft(), None)
            if session is not None:
                events += session.drain_text()
                session.close()
                events.append(ev.SessionClosed(session.id))
        return events, left

    def evict(self, session: Session, code: str, message: str) -> list[ev.Event]:
        """End a session the engine cannot go on serving: its KV returns to the pool, its owner is told why."""
        self.live.pop(session.id, None)
        session.close()
        return [ev.Error(session.id, code, message, fatal=True), ev.SessionClosed(session.id, reason=code)]

    def fail(self, session: Session, exc: Exception) -> list[ev.Event]:
        """The session's own work raised `exc`: it ends, the others go on."""
        log.exception("session=%s event=session_failed", session.id)
        return self.evict(session, "internal_error", f"{type(exc).__name__}: {exc}")

    def _new(self, sid: str, config: SessionConfig, history: list[dict[str, str]] | None) -> Session:
        instructions = config.instructions if config.instructions is not None else DEFAULT_INSTRUCTIONS
        framing = self._framings.get(instructions)
        if framing is None:
            framing = self._framings[instructions] = ChatFraming(self._tokenizer, instructions)
        return Session(sid, config, framing, self._vocab, self._kv, history, max_slice_tokens=self._max_slice_tokens)

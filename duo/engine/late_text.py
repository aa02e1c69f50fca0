"""Reply text decoded a tick late, beside the next tick's forward.

`advance` only queues a reply's sampled token in its detokenizer; the engine decodes the queues once the next
tick's forward is launched, so decoding (a quarter of the host's work per tick) runs while the device does.
An owner that can take events mid-tick (the loop) sets `emit` and gets the deltas then, delivered ahead of the
tick's own events; otherwise they lead the tick's returned events. Either way a session sees its events in the
order decoding tick by tick would give them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from . import events as ev

if TYPE_CHECKING:
    from .session import Session


class LateText:
    def __init__(self) -> None:
        self.emit: Callable[[list[ev.Event]], None] | None = None
        self._sessions: list[Session] = []  # sessions whose newest reply tokens are not decoded yet
        self._early: list[ev.Event] = []  # their text, without `emit`: it leads the tick's events

    def __bool__(self) -> bool:
        return bool(self._sessions)

    def queued(self, session: Session) -> None:
        """`session`'s reply got a token this tick."""
        self._sessions.append(session)

    def decode(self, live: Mapping[str, Session]) -> None:
        """Decode the queued tokens of the sessions still in `live` into text deltas, and hand them on."""
        sessions, self._sessions = self._sessions, []
        out = [e for s in sessions if live.get(s.id) is s for e in s.drain_text()]
        if out and self.emit is not None:
            self.emit(out)
        else:
            self._early += out

    def take(self) -> list[ev.Event]:
        """The decoded text not handed to `emit`, to lead the tick's events."""
        early, self._early = self._early, []
        return early

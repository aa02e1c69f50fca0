"""Replies kept from the client until the user's turn is confirmed: DUO answered before the pause.

A reply that DUO starts while the user may still go on (a speculative reply on a `process` before the pause,
or one started by an early close) is generated at once, but its engine events wait here. When the turn is
confirmed they are released, in order and at once; when the user goes on, the reply is withdrawn in the
engine and its events, held or still to come, are dropped: nothing of it ever reaches the client. `on_drop`
hears of each reply dropped unreleased (its audio, spoken ahead, is cancelled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from duo.engine import events as ev


@dataclass(frozen=True)
class Release(ev.Event):
    """Queued behind the engine's events: the turn is confirmed, release what is held (the pump's marker)."""


class Held:
    def __init__(self, on_drop: Callable[[str], None] | None = None) -> None:
        self.on_drop = on_drop
        self.response_id: str | None = None  # the reply being held
        self.events: list[ev.Event] = []
        self.withdrawn: set[str] = set()  # replies taken back whose engine events are still to come

    @property
    def holding(self) -> bool:
        return self.response_id is not None

    def hold(self, started: ev.ResponseStarted) -> None:
        self.response_id, self.events = started.response_id, [started]

    def take(self, event: ev.Event) -> bool:
        """Whether `event` stays from the client (it belongs to the held reply, or to a withdrawn one)."""
        rid = getattr(event, "response_id", None)
        if rid is None:
            return False
        if rid in self.withdrawn:
            if isinstance(event, ev.ResponseDone) and event.status is ev.ResponseStatus.WITHDRAWN:
                self.withdrawn.discard(rid)
            return True
        if rid == self.response_id:
            if isinstance(event, ev.ResponseDone) and event.status is ev.ResponseStatus.WITHDRAWN:
                self.drop()  # taken back before the server asked by its id
            else:
                self.events.append(event)
            return True
        return False

    def release(self) -> list[ev.Event]:
        """The turn is confirmed: the held reply's events, to apply now."""
        events, self.events, self.response_id = self.events, [], None
        return events

    def withdraw(self) -> str | None:
        """The user went on: the held reply's id, to withdraw in the engine; its events are dropped."""
        rid = self.drop()
        if rid is not None:
            self.withdrawn.add(rid)
        return rid

    def drop(self) -> str | None:
        """Forget the held reply unreleased (withdrawn, or gone with its engine session); returns its id."""
        rid, self.response_id, self.events = self.response_id, None, []
        if rid is not None and self.on_drop is not None:
            self.on_drop(rid)
        return rid

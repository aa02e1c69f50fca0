"""A tick's reply text decoded late: handed to `emit` when there is one, else kept to lead the tick's events;
sessions that left in the meantime are skipped."""

from __future__ import annotations

from duo.engine import events as ev
from duo.engine.late_text import LateText


class Talker:
    """A session's side of it: the delta its queued tokens decode to."""

    def __init__(self, sid: str, text: str) -> None:
        self.id, self.text = sid, text

    def drain_text(self) -> list[ev.Event]:
        text, self.text = self.text, ""
        return [ev.TextDelta(self.id, "resp", text)] if text else []


def test_text_goes_to_emit_or_leads_the_ticks_events_and_left_sessions_are_skipped() -> None:
    a, b, gone = Talker("a", "Hel"), Talker("b", "Yes"), Talker("c", "lost")
    late = LateText()
    for s in (a, b, gone):
        late.queued(s)  # type: ignore[arg-type]
    assert late
    late.decode({"a": a, "b": b})  # type: ignore[dict-item]
    assert not late and [e.delta for e in late.take()] == ["Hel", "Yes"] and late.take() == []
    emitted: list[list[ev.Event]] = []
    late.emit = emitted.append
    a.text = "lo"
    late.queued(a)  # type: ignore[arg-type]
    late.queued(b)  # type: ignore[arg-type]  (nothing new: no delta)
    late.decode({"a": a, "b": b})  # type: ignore[dict-item]
    assert [[e.delta for e in batch] for batch in emitted] == [["lo"]] and late.take() == []
    assert gone.text == "lost"  # never drained: it left before its text was decoded

"""Held replies: kept in order until released, and nothing of a withdrawn one gets through."""

from __future__ import annotations

from duo.engine import events as ev
from duo.server.held import Held
from duo.server.turn_detection import DuoParams, DuoTurnDetection


def _reply(rid: str, status: ev.ResponseStatus = ev.ResponseStatus.COMPLETED) -> list[ev.Event]:
    return [ev.ResponseStarted("s", rid, "hi"), ev.TextDelta("s", rid, "Hel"), ev.TextDelta("s", rid, "lo"),
            ev.ResponseDone("s", rid, status, "Hello", 2)]


def test_held_events_are_released_in_order_and_others_pass() -> None:
    held = Held()
    started, *rest = _reply("r1")
    held.hold(started)
    assert all(held.take(e) for e in rest) and held.holding
    assert not held.take(ev.TextDelta("s", "r0", "x"))  # another reply's events go on
    assert not held.take(ev.StateDecided("s", "process", {}, "a", "a", "p"))  # type: ignore[arg-type]
    assert held.release() == [started, *rest] and not held.holding and held.release() == []


def test_a_withdrawn_reply_is_dropped_to_its_last_event() -> None:
    held = Held()
    started, delta, *_ = _reply("r1")
    held.hold(started)
    held.take(delta)
    assert held.withdraw() == "r1" and held.release() == []
    late = [ev.TextDelta("s", "r1", "x"), ev.ResponseDone("s", "r1", ev.ResponseStatus.WITHDRAWN, "x", 3)]
    assert all(held.take(e) for e in late) and not held.withdrawn  # forgotten once the engine confirms
    assert held.withdraw() is None


def test_a_reply_withdrawn_before_its_id_was_asked_for_leaves_nothing_held() -> None:
    held = Held()
    started, delta, *_ = _reply("r2")
    held.hold(started)
    held.take(delta)
    assert held.take(ev.ResponseDone("s", "r2", ev.ResponseStatus.WITHDRAWN, "x", 1))
    assert not held.holding and held.release() == []


def test_the_short_pause_never_exceeds_the_pause() -> None:
    assert DuoParams().early == 150 and DuoParams().confirm == 200 and DuoParams().speculate
    assert DuoParams(confirm_ms=None).confirm == 500 and DuoParams(confirm_ms=900).confirm == 500  # the pause
    short = DuoParams(pause_ms=120)
    assert short.early == 120 and short.confirm == 120
    assert DuoParams(early_pause_ms=None, confirm_ms=300).early is None
    assert DuoParams(confirm_ms=100).confirm == 150  # never shorter than the early pause
    reported = DuoTurnDetection(type="duo", partial_ms=300).reported()["duo"]
    assert reported["partial_ms"] == 300 and reported["early_pause_ms"] == 150 and reported["confirm_ms"] == 200


def test_every_reply_dropped_unreleased_is_reported_and_a_released_one_is_not() -> None:
    dropped: list[str] = []
    held = Held(on_drop=dropped.append)
    for rid in ("r1", "r2", "r3", "r4"):
        held.hold(_reply(rid)[0])
        if rid == "r1":
            held.withdraw()  # the user went on
        elif rid == "r2":
            held.take(ev.ResponseDone("s", rid, ev.ResponseStatus.WITHDRAWN, "x", 1))  # the engine took it back
        elif rid == "r3":
            held.drop()  # its engine session was replaced
        else:
            held.release()
    assert dropped == ["r1", "r2", "r3"]

"""When standard and duo-aware clients hear of the user's input item."""

from __future__ import annotations

from duo.server import server_events as se
from duo.server.items import Items
from duo.server.user_input import UserInput


def _input() -> tuple[UserInput, list[se.ServerEvent]]:
    sent: list[se.ServerEvent] = []
    user = UserInput(sent.append, Items())
    user.duo_events, user.complete_at_end = True, False
    return user, sent


def test_speech_that_goes_on_after_an_ignored_utterance_starts_an_item_of_its_own() -> None:
    user, sent = _input()
    background = user.speech_started(0)
    user.heard("oh I'm originally from", False, spoken=True, start_ms=0)
    user.drop()  # judged `ignore`, while the same speech goes on into a request
    query = user.heard("what's the population of", False, spoken=True, start_ms=4800)
    assert query.id != background.id and query.start_ms == 4800
    starts = [e for e in sent if isinstance(e, se.DuoSpeechStarted)]
    assert [(e.item_id, e.audio_start_ms) for e in starts] == [(background.id, 0), (query.id, 4800)]
    user.announce()  # judged for duo: standard clients hear it began where its words did
    standard = [e for e in sent if isinstance(e, se.SpeechStarted)]
    assert [(e.item_id, e.audio_start_ms) for e in standard] == [(query.id, 4800)]


def test_a_partial_after_an_ignored_utterance_opens_the_item_its_judgement_names() -> None:
    # "I'll be" is judged `ignore` and dropped while the speaker goes on; the next partial ("Tell me a joke.")
    # is judged before any final words: its item exists then, and the final words join it
    user, sent = _input()
    user.speech_started(544)
    user.heard("I'll be", False, spoken=True, start_ms=544)
    user.drop()
    partial = user.hearing(True, start_ms=544)
    assert user.item is partial
    final = user.heard("Tell me a joke.", True, spoken=True, start_ms=544)
    assert final is partial and final.texts == ["Tell me a joke."]
    starts = [e.item_id for e in sent if isinstance(e, se.DuoSpeechStarted)]
    assert starts[-1] == partial.id and starts.count(partial.id) == 1


def test_an_utterance_heard_from_its_start_is_started_once() -> None:
    user, sent = _input()
    item = user.speech_started(500)
    user.heard("what time", False, spoken=True, start_ms=500)
    user.heard("is it", False, spoken=True, start_ms=2500)
    assert [e.item_id for e in sent if isinstance(e, se.DuoSpeechStarted)] == [item.id]

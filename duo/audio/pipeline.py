"""Whole-stream helpers: run audio through slicer and recognizer exactly as a live session would."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from duo.audio.asr import Recognizer
from duo.audio.decode import SAMPLE_RATE, load_file
from duo.audio.events import AudioSlice, Event, SpeechStarted, SpeechStopped, TextSlice
from duo.audio.slicer import Slicer, SlicerConfig
from duo.audio.transcriber import StreamTranscriber, TranscriberConfig

Output = SpeechStarted | SpeechStopped | TextSlice


def stream_events(
    samples: np.ndarray,
    recognizer: Recognizer,
    slicer_config: SlicerConfig | None = None,
    transcriber_config: TranscriberConfig | None = None,
    chunk_s: float = 0.1,
) -> Iterator[Output]:
    """Feed 16 kHz audio in `chunk_s` pieces (as a client would send it) and yield events and text slices."""
    slicer = Slicer(slicer_config)
    transcriber = StreamTranscriber(recognizer, transcriber_config)
    step = max(1, int(chunk_s * SAMPLE_RATE))
    for i in range(0, samples.size, step):
        yield from _recognize(slicer.push(samples[i : i + step]), transcriber)
    yield from _recognize(slicer.flush(), transcriber)


def _recognize(events: list[Event], transcriber: StreamTranscriber) -> Iterator[Output]:
    for event in events:
        yield transcriber.transcribe(event) if isinstance(event, AudioSlice) else event


def transcribe_file(
    path: str | os.PathLike[str],
    recognizer: Recognizer,
    slicer_config: SlicerConfig | None = None,
    transcriber_config: TranscriberConfig | None = None,
) -> list[Output]:
    """All events and text slices of an audio file."""
    return list(stream_events(load_file(path), recognizer, slicer_config, transcriber_config))


def utterances(outputs: list[Output]) -> list[str]:
    """The final text of each utterance, in order."""
    return [o.utterance_text for o in outputs if isinstance(o, TextSlice) and o.final and o.utterance_text]

"""The live audio path of one microphone, assembled once: wire audio in, speech events and recognized slices out.

`LiveInput` is what a server session, `stream_events` (files and tests) and the tools all hear audio through:
a PCM16 decoder, the streaming slicer (2 s slices closed at pauses, speech start and stop) and the per-stream
transcriber that recognizes each slice in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from duo.audio.asr import Recognizer
from duo.audio.decode import SAMPLE_RATE, WIRE_RATE, PcmStream
from duo.audio.events import AudioSlice, Event, SpeechStarted, SpeechStopped, TextSlice
from duo.audio.slicer import Slicer, SlicerConfig
from duo.audio.transcriber import StreamTranscriber, TranscriberConfig

Output = SpeechStarted | SpeechStopped | TextSlice


class LiveInput:
    """One microphone stream. `push` and `flush` return speech events and `AudioSlice`s in time order;
    `transcriber` turns each slice into a `TextSlice` (directly, or through the server's batcher)."""

    def __init__(self, recognizer: Recognizer, rate: int = WIRE_RATE, slicer: SlicerConfig | None = None,
                 transcriber: TranscriberConfig | None = None, codec: str = "pcm16") -> None:
        self.pcm = PcmStream(rate, codec)
        self.slicer = Slicer(slicer)
        self.transcriber = StreamTranscriber(recognizer, transcriber)

    def decode(self, payload: str | bytes) -> np.ndarray:
        """The 16 kHz samples of one base64 wire chunk (raises AudioFormatError on bad audio)."""
        return self.pcm.push_base64(payload)

    def push(self, samples: np.ndarray) -> list[Event]:
        """16 kHz samples in; the events they complete out."""
        return self.slicer.push(samples)

    def flush(self) -> list[Event]:
        """End the current utterance now (a committed buffer, the end of a file)."""
        return self.slicer.flush()

    def clear(self) -> None:
        self.slicer.clear()

    def recognize(self, piece: AudioSlice) -> TextSlice:
        return self.transcriber.transcribe(piece)


def stream_events(
    samples: np.ndarray,
    recognizer: Recognizer,
    slicer_config: SlicerConfig | None = None,
    transcriber_config: TranscriberConfig | None = None,
    chunk_s: float = 0.1,
) -> Iterator[Output]:
    """Feed 16 kHz audio in `chunk_s` pieces (as a client would send it) and yield events and text slices."""
    live = LiveInput(recognizer, SAMPLE_RATE, slicer_config, transcriber_config)
    step = max(1, int(chunk_s * SAMPLE_RATE))
    for i in range(0, samples.size, step):
        yield from _recognize(live.push(samples[i : i + step]), live)
    yield from _recognize(live.flush(), live)


def _recognize(events: list[Event], live: LiveInput) -> Iterator[Output]:
    for event in events:
        yield live.recognize(event) if isinstance(event, AudioSlice) else event


def utterances(outputs: list[Output]) -> list[str]:
    """The final text of each utterance, in order."""
    return [o.utterance_text for o in outputs if isinstance(o, TextSlice) and o.final and o.utterance_text]

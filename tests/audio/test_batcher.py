"""Cross-session batching: slices ready together share one decode, and each session gets its own text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from duo.audio.asr import Recognizer
from duo.audio.batcher import AsrBatcher
from duo.audio.errors import AudioError
from duo.audio.events import AudioSlice
from duo.audio.pipeline import stream_events, utterances
from duo.audio.slicer import Slicer
from duo.audio.textnorm import wer
from duo.audio.transcriber import StreamTranscriber

PHRASES = ["Turn on the radio.", "What day is it today?", "Open the garage door.", "Call my brother."]


async def test_concurrent_sessions_are_batched(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    batcher = AsrBatcher(max_batch=8, max_wait_s=0.05)
    try:
        async def session(text: str) -> str:
            stream, slicer = StreamTranscriber(tiny), Slicer()
            clip = synth(text, "flite")
            out = ""
            for event in [*slicer.push(clip), *slicer.flush()]:
                if isinstance(event, AudioSlice):
                    out = (await batcher.transcribe(stream, event)).utterance_text
            return out

        heard = await asyncio.gather(*(session(p) for p in PHRASES))
    finally:
        await batcher.close()
    alone = [" ".join(utterances(list(stream_events(synth(p, "flite"), tiny)))) for p in PHRASES]
    assert heard == alone  # batching changes nothing
    assert np.mean([wer(p, h) for p, h in zip(PHRASES, heard, strict=True)]) <= 0.15
    assert max(batcher.batches) >= 2 and sum(batcher.batches) == len(PHRASES)


async def test_a_failing_slice_reports_to_its_caller_and_the_worker_survives(tiny: Recognizer) -> None:
    batcher = AsrBatcher(max_batch=4, max_wait_s=0.0)
    try:
        stream = StreamTranscriber(tiny)
        with pytest.raises(AudioError, match="out of order"):
            await batcher.transcribe(stream, AudioSlice(0, 5, 0.0, 1.0, True, np.zeros(16_000, np.float32)))
        silent = await batcher.transcribe(StreamTranscriber(tiny), AudioSlice(0, 0, 0.0, 1.0, True,
                                                                              np.zeros(16_000, np.float32)))
        assert silent.text == ""
    finally:
        await batcher.close()
    with pytest.raises(AudioError):
        AsrBatcher(max_batch=0)

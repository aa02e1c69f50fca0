from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from duo.audio.decode import load_file
from duo.audio.errors import AudioFormatError
from duo.audio.events import Event
from duo.audio.slicer import Slicer
from duo.audio.vad_batcher import VadBatcher

from .test_slicer import LONG, run

CHUNK = 640  # 40 ms at 16 kHz, what a Realtime client sends


def marks(events: list[Event]) -> list[tuple[str, float]]:
    return [(type(e).__name__, getattr(e, "end_s", getattr(e, "time_s", 0))) for e in events]


async def stream(batcher: VadBatcher, x: np.ndarray) -> list[Event]:
    """One client: a chunk, then the next once the server has taken it (as the transport awaits each event)."""
    slicer, events = Slicer(), []
    for i in range(0, x.size, CHUNK):
        events += await batcher.push(slicer, x[i : i + CHUNK])
        await asyncio.sleep(0)
    return events + slicer.flush()


def test_streams_batched_together_hear_what_each_hears_alone(synth: Callable[..., np.ndarray],
                                                              alsa_dir: Path) -> None:
    xs = [synth(LONG), load_file(alsa_dir / "Front_Right.wav"), synth("Set a timer for ten minutes."),
          np.zeros(24_000, dtype=np.float32)]
    alone = [marks(run(x, chunk=CHUNK)) for x in xs]
    rounds = max(-(-x.size // CHUNK) for x in xs)

    async def main() -> tuple[list[list[Event]], int]:
        """Every client sends its next chunk at once, as live microphones do, each after its previous one."""
        batcher, slicers = VadBatcher(), [Slicer() for _ in xs]
        heard: list[list[Event]] = [[] for _ in xs]
        try:
            for i in range(0, rounds * CHUNK, CHUNK):
                chunks = [x[i : i + CHUNK] for x in xs]
                got = await asyncio.gather(*(batcher.push(s, c) for s, c in zip(slicers, chunks, strict=True)))
                for h, events in zip(heard, got, strict=True):
                    h += events
            return [h + s.flush() for h, s in zip(heard, slicers, strict=True)], batcher.calls
        finally:
            await batcher.close()

    heard, calls = asyncio.run(main())
    assert [marks(h) for h in heard] == alone
    assert all(alone[:3]) and not alone[3], "the speech was heard, the silence was not"
    # a chunk of 640 samples completes a 512-sample frame in all but one round in five: those rounds make no call
    assert calls <= rounds  # one forward per round for the four streams, not one per stream


def test_bad_audio_is_refused_and_the_batcher_serves_the_next_stream(synth: Callable[..., np.ndarray]) -> None:
    x = synth("Set a timer for ten minutes.")

    async def main() -> list[Event]:
        batcher = VadBatcher()
        try:
            with pytest.raises(AudioFormatError):
                await batcher.push(Slicer(), np.full(CHUNK, np.nan, dtype=np.float32))
            return await stream(batcher, x)
        finally:
            await batcher.close()

    assert marks(asyncio.run(main())) == marks(run(x, chunk=CHUNK))


def test_a_stream_that_leaves_mid_chunk_does_not_hold_up_the_others(synth: Callable[..., np.ndarray]) -> None:
    x = synth("Set a timer for ten minutes.")

    async def main() -> list[Event]:
        batcher = VadBatcher()
        try:
            gone = asyncio.create_task(batcher.push(Slicer(), x[:CHUNK * 4]))
            await asyncio.sleep(0)
            gone.cancel()  # the session closed while its chunk was queued
            return await stream(batcher, x)
        finally:
            await batcher.close()

    assert marks(asyncio.run(main())) == marks(run(x, chunk=CHUNK))


def test_closing_cancels_the_pushes_still_waiting(synth: Callable[..., np.ndarray]) -> None:
    x = synth("Set a timer for ten minutes.")

    async def main() -> list[BaseException | list[Event]]:
        batcher = VadBatcher()
        pushes = [asyncio.create_task(batcher.push(Slicer(), x[:CHUNK * 8])) for _ in range(3)]
        await asyncio.sleep(0)  # all three queued; the first batch may be running
        await batcher.close()
        return await asyncio.wait_for(asyncio.gather(*pushes, return_exceptions=True), 5)

    results = asyncio.run(main())
    assert len(results) == 3 and all(isinstance(r, asyncio.CancelledError | list) for r in results)

"""Cross-session VAD for the server: every stream's new frames judged together, off the event loop.

A session's 40 ms chunk holds one or two 32 ms frames. Judged where it arrives, each chunk was a Silero
forward on the event loop, so the loop's time went to the VAD and every tick and transcript waited behind it.
Here sessions `await batcher.push(slicer, samples)`; one worker takes whatever is queued and judges it in one
`SileroVad.judge` call on a thread of its own (frame k of every stream in one batch, which costs a quarter per
stream at 16 streams), while the loop serves the sockets. The slicer itself advances on the loop, so its
state is only ever touched there; each session awaits its chunk before its next event, which keeps a
stream's frames in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from duo.audio.events import Event
from duo.audio.slicer import Slicer
from duo.audio.vad import SileroVad

log = logging.getLogger(__name__)

_Item = tuple[Slicer, np.ndarray, "asyncio.Future[np.ndarray]"]


class VadBatcher:
    """One per process. Start it inside the running loop (the first `push` does); `close` at shutdown."""

    def __init__(self, vad: SileroVad | None = None) -> None:
        self.vad = vad or SileroVad.shared()
        self.calls = 0  # batched judgements made (each one forward per frame position)
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duo-vad")

    async def push(self, slicer: Slicer, samples: np.ndarray) -> list[Event]:
        """`slicer.push(samples)`, with the VAD batched with the other streams' (raises as it does)."""
        frames = slicer.take_frames(samples)
        if not len(frames):
            return []
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="duo-vad")
        assert self._queue is not None
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((slicer, frames, future))
        return slicer.advance_all(frames, await future)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():  # whatever arrived while the last batch ran
                items.append(self._queue.get_nowait())
            live = [item for item in items if not item[2].done()]  # a cancelled push needs no judgement
            if not live:
                continue
            try:
                probs = await loop.run_in_executor(self._pool, self._judge, live)
            except asyncio.CancelledError:  # closing: nobody waits on a judgement that will not come
                for _, _, future in live:
                    future.cancel()
                raise
            except Exception as exc:  # the model failed: each waiting stream hears why, the worker goes on
                log.exception("event=vad_failed streams=%d", len(live))
                for _, _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), p in zip(live, probs, strict=True):
                if not future.done():
                    future.set_result(p)

    def _judge(self, items: list[_Item]) -> list[np.ndarray]:
        self.calls += 1
        return self.vad.judge([frames for _, frames, _ in items], [slicer.vad_state for slicer, _, _ in items])

    async def close(self) -> None:
        """Stop the worker; a push still waiting is cancelled, not left hanging."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[2].cancel()
        self._pool.shutdown(wait=False)

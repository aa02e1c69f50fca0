"""Cross-session batching for the server: slices that become ready together are recognized in one call.

Sessions `await batcher.transcribe(stream, slice)`; a single worker collects whatever is queued (up to
`max_batch`, waiting at most `max_wait_s` for company once one slice is in) and runs one batched decode in a
thread, so the event loop never blocks on Whisper. Slices of one stream stay in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from duo.audio.errors import AudioError
from duo.audio.events import AudioSlice, TextSlice
from duo.audio.transcriber import StreamTranscriber, transcribe_batch

log = logging.getLogger(__name__)

_Item = tuple[StreamTranscriber, AudioSlice, "asyncio.Future[TextSlice]"]


class AsrBatcher:
    """One per process (per recognizer). Start it inside the running loop; `close` at shutdown."""

    def __init__(self, max_batch: int = 16, max_wait_s: float = 0.005) -> None:
        if not 1 <= max_batch <= 256 or not 0.0 <= max_wait_s <= 1.0:
            raise AudioError("max_batch must be 1..256 and max_wait_s 0..1 s")
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duo-asr")
        self.batches: list[int] = []  # sizes of the batches run, for metrics and tests

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="duo-asr-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def transcribe(self, stream: StreamTranscriber, piece: AudioSlice) -> TextSlice:
        self.start()
        assert self._queue is not None
        future: asyncio.Future[TextSlice] = asyncio.get_running_loop().create_future()
        await self._queue.put((stream, piece, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(items) < self.max_batch:
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            live = [it for it in items if not it[2].cancelled()]
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._pool, transcribe_batch, [(s, p) for s, p, _ in live])
            except Exception as exc:  # one bad batch must not kill the worker: every waiter gets the error
                log.warning("asr_batch_failed size=%d error=%s", len(live), exc)
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches.append(len(live))
            log.debug("asr_batch size=%d seconds=%.3f", len(live), time.perf_counter() - t0)
            for (_, _, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

"""Pinned host memory for the copies of a tick, so that neither direction blocks the host (CUDA).

A copy from pageable memory makes the host wait: the driver stages it, and a device-to-host read also waits
for everything queued before it. From pinned memory with `non_blocking=True` both directions are queued like
kernels and the host goes on (planning, bookkeeping) until it really needs the results. A buffer must not be
rewritten while a copy that reads it may still be in flight, so each use takes the next buffer of a small
ring and first waits for the event recorded after that buffer's last copy, which by then has long completed.
"""

from __future__ import annotations

import numpy as np
import torch


class PinnedRing:
    """`depth` pinned host buffers of `dtype`, taken in turn; each grows (doubling) to what is asked of it."""

    def __init__(self, dtype: torch.dtype, depth: int = 2) -> None:
        self.dtype = dtype
        self._buffers: list[torch.Tensor] = [torch.empty(0, dtype=dtype) for _ in range(depth)]
        self._events: list[torch.cuda.Event | None] = [None] * depth
        self._at = -1

    def take(self, n: int) -> torch.Tensor:
        """A host buffer of `n` elements that no queued copy still reads."""
        self._at = (self._at + 1) % len(self._buffers)
        event = self._events[self._at]
        if event is not None:
            event.synchronize()  # the copy that read it last (a tick or two ago: long done)
            self._events[self._at] = None
        if self._buffers[self._at].numel() < n:
            size = max(n, 2 * self._buffers[self._at].numel())
            self._buffers[self._at] = torch.empty(size, dtype=self.dtype, pin_memory=True)
        return self._buffers[self._at][:n]

    def mark(self) -> torch.cuda.Event:
        """Record, on the current stream, that the copy of the buffer just taken is queued."""
        event = torch.cuda.Event()
        event.record()
        self._events[self._at] = event
        return event


class Download:
    """A device tensor on its way to the host: `wait` returns it as a numpy array."""

    def __init__(self, host: torch.Tensor, event: torch.cuda.Event | None) -> None:
        self._host, self._event = host, event

    def wait(self) -> np.ndarray:
        if self._event is not None:
            self._event.synchronize()
        return self._host.numpy()


class Staging:
    """The runner's side of the host-device copies: uploads of index arrays, downloads of results."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self.payload = PinnedRing(torch.int64) if self.pinned else None  # the tick's plan is written in here
        # several uploads a tick (the plan's rows, sampled groups, fed tokens): a buffer is reused only once
        # the ticks in flight have read it, so an overlapped tick never waits for the one before it
        self._up = PinnedRing(torch.int64, depth=16) if self.pinned else None
        self._down = PinnedRing(torch.float32) if self.pinned else None

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """An int64 host array on the device, without the host waiting for the copy."""
        if self._up is None:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(self.device)
        host = self._up.take(array.size)
        host.numpy()[:] = array.ravel()
        out = host.view(array.shape).to(self.device, non_blocking=True)
        self._up.mark()
        return out

    def download(self, t: torch.Tensor) -> Download:
        """Start copying float32 `t` to the host; the host goes on until it calls `wait`."""
        if self._down is None:
            return Download(t.detach().to("cpu", torch.float32), None)
        host = self._down.take(t.numel()).view(t.shape)
        host.copy_(t, non_blocking=True)
        return Download(host, self._down.mark())

"""Timing on the device (wait for queued kernels, the median of repeated calls, tick percentiles) and freeing
what a finished engine held before the next one sizes its pool.
"""

from __future__ import annotations

import gc
import statistics
import time

import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def timed(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def release() -> None:
    """Free a finished engine's pool and graphs before the next one sizes its pool from free memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

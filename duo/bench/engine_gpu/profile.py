"""`profile`: where a tick's time goes, from the torch profiler: how much of it the GPU is busy, how much it
waits for the host, and which host operations cost most.

The load is `capacity`'s (replies streaming while background slices are judged), warmed the same way; then
`--ticks` ticks run under the profiler. GPU busy time is the union of the kernels' intervals inside the
ticks (graph replays included), so overlapping kernels count once; what is left of a tick's wall time is the
GPU waiting for the host: planning, launches, bookkeeping, copies back.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from duo.engine.loader import Backbone

from .report import emit
from .timing import pct, sync
from .workload import Workload

TICK = "duo.tick"


def covered(intervals: list[tuple[float, float]], windows: list[tuple[float, float]]) -> float:
    """Total length of the union of `intervals` clipped to the union of `windows` (both as (start, end))."""
    clipped = sorted((max(a, w0), min(b, w1)) for w0, w1 in windows for a, b in intervals
                     if min(b, w1) > max(a, w0))
    total, end = 0.0, float("-inf")
    for a, b in clipped:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarize(prof_events: list, ticks: int, top: int = 6) -> dict:
    """Busy fraction and host cost per tick from the profiler's events (times in microseconds)."""
    windows = [(e.time_range.start, e.time_range.end) for e in prof_events if e.name == TICK]
    kernels = [(e.time_range.start, e.time_range.end) for e in prof_events
               if e.device_type == DeviceType.CUDA and e.time_range.end > e.time_range.start]
    wall = sum(b - a for a, b in windows)
    busy = covered(kernels, windows)
    host: dict[str, float] = {}
    for e in prof_events:
        if e.device_type == DeviceType.CPU and e.name != TICK:
            host[e.name] = host.get(e.name, 0.0) + e.self_cpu_time_total
    heaviest = sorted(host.items(), key=lambda kv: -kv[1])[:top]
    return {"profiled_ticks": ticks, "tick_ms_mean": round(wall / max(ticks, 1) / 1000, 2),
            "gpu_busy_ms_per_tick": round(busy / max(ticks, 1) / 1000, 2),
            "gpu_busy_fraction": round(busy / wall, 3) if wall else 0.0,
            "gpu_waits_ms_per_tick": round((wall - busy) / max(ticks, 1) / 1000, 2),
            "host_self_ms_per_tick": {name: round(us / max(ticks, 1) / 1000, 3) for name, us in heaviest}}


def profile_ticks(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     paged=args.attention == "paged")
        w.run(2.0)  # warms graphs and the load exactly as capacity does, then two timed seconds we discard
        walls: list[float] = []
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profile(activities=activities) as prof:
            for _ in range(args.ticks):
                t0 = time.perf_counter()
                with record_function(TICK):
                    w.arrivals(t0)
                    w.keep_replying()
                    w.engine.step()
                    sync()  # the tick's kernels end inside its window
                walls.append(time.perf_counter() - t0)
        row = {"bench": "profile", "sessions": n, "tick_ms_p50_profiled": pct(walls, 0.5),
               **summarize(list(prof.events()), args.ticks)}
        w.close()
        rows.append(emit(row))
    return rows

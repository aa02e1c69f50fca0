"""`profile`: where a tick's time goes, from the torch profiler: how much of it the GPU is busy, how much it
waits for the host, and which host operations cost most.

The load is `capacity`'s (replies streaming while background slices are judged), warmed the same way; then
`--ticks` ticks run under the profiler. GPU busy time is the union of the kernels' intervals inside the
ticks (graph replays included), so overlapping kernels count once; what is left of a tick's wall time is the
GPU waiting for the host: planning, launches, bookkeeping, copies back. Overlapped ticks (the default) are
not synchronized one by one: a tick's kernels run on into the next window, and the windows tile the run.
The kernels' own time is also split by kind (matrix multiplies, the paged attention kernel, other attention,
the rest), which says what a GPU-bound tick is made of.
"""

from __future__ import annotations

import argparse
import re
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from duo.engine.loader import Backbone

from .report import emit
from .timing import pct, sync
from .workload import Workload, engine_options

TICK = "duo.tick"
# kernel kinds by name, first match wins; the rest are elementwise kernels, norms, copies, sampling
KINDS = [("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|cublas|splitk", re.I)),
         ("paged attention", re.compile(r"paged_decode", re.I)),
         ("other attention", re.compile(r"flash|fmha|attention|softmax", re.I))]


def kind(kernel: str) -> str:
    """The kind of a kernel by its name."""
    return next((k for k, pattern in KINDS if pattern.search(kernel)), "other")


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
    windows = [(e.time_range.start, e.time_range.end) for e in prof_events
               if e.name == TICK and e.device_type == DeviceType.CPU]
    # the tick's own annotation is mirrored on the GPU's timeline as an event spanning its kernels: not a kernel
    launched = [e for e in prof_events if e.device_type == DeviceType.CUDA and e.name != TICK
                and e.time_range.end > e.time_range.start]
    kernels = [(e.time_range.start, e.time_range.end) for e in launched]
    by_kind: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for e in launched:
        took = e.time_range.end - e.time_range.start
        by_kind[kind(e.name)] = by_kind.get(kind(e.name), 0.0) + took
        by_name[e.name[:90]] = by_name.get(e.name[:90], 0.0) + took
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
            "kernel_ms_per_tick": {k: round(us / max(ticks, 1) / 1000, 2)
                                   for k, us in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "heaviest_kernels_ms_per_tick": {name: round(us / max(ticks, 1) / 1000, 2) for name, us in
                                             sorted(by_name.items(), key=lambda kv: -kv[1])[:top * 2]},
            "host_self_ms_per_tick": {name: round(us / max(ticks, 1) / 1000, 3) for name, us in heaviest}}


def profile_ticks(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     options=engine_options(args))
        w.run(2.0)  # warms graphs and the load exactly as capacity does, then two timed seconds we discard
        walls: list[float] = []
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profile(activities=activities) as prof:
            for i in range(args.ticks):
                t0 = time.perf_counter()
                with record_function(TICK):
                    w.arrivals(t0)
                    w.keep_replying()
                    w.engine.step()
                    if not w.engine.overlap or i == args.ticks - 1:
                        sync()  # the tick's kernels end inside its window (overlapped: they run in the next)
                walls.append(time.perf_counter() - t0)
        row = {"bench": "profile", "sessions": n, "tick_ms_p50_profiled": pct(walls, 0.5),
               **summarize(list(prof.events()), args.ticks)}
        w.close()
        rows.append(emit(row))
    return rows

"""Tick latency and forward passes per slice of the DUO engine on the embedded model.

Workload: every session always has a reply streaming (a finished one is followed by a new question);
while it replies, a slice of background speech arrives every `--slice-every` ticks and is judged (k
forecast tokens, then ignored) alongside the reply. The same workload runs under DUO (one forward per
tick) and under the time-division baseline (outputs and inputs in separate passes). Prints JSON lines,
then a summary table.

    python -m duo.bench.engine_cpu [--sessions 1 8] [--ticks 60] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from duo.engine.config import EngineConfig, Mode, SamplingParams, SessionConfig, Thresholds
from duo.engine.llm_engine import Engine
from duo.engine.loader import load_backbone

BACKGROUND = "and then she told me the train was late again so we walked all the way home"


def run(backbone, mode: Mode, sessions: int, ticks: int, slice_every: int, k: int) -> dict:
    engine = Engine(backbone, EngineConfig(mode=mode))
    config = SessionConfig(forecast_tokens=k, thresholds=Thresholds(process=2.0, ignore=0.0),  # ignore all
                           sampling=SamplingParams(max_new_tokens=2048))
    handles = [engine.open_session(config) for _ in range(sessions)]

    def keep_replying() -> None:
        """Every session always has a reply streaming: a finished one is followed by a new question."""
        for i, h in enumerate(handles):
            if h.reply is None and not h.inbox:
                h.push_slice(f"please tell me a very long story about the number {i}", judge=False)
                h.respond()

    keep_replying()
    for _ in range(3):
        engine.step()
    sync = torch.cuda.synchronize if backbone.device.type == "cuda" else (lambda: None)
    times, passes, slices = [], 0, 0
    for t in range(ticks):
        if t % slice_every == 0:
            for h in handles:
                h.push_slice(BACKGROUND)
            slices += sessions
        keep_replying()
        sync()
        start = time.perf_counter()
        engine.step()
        sync()
        times.append(time.perf_counter() - start)
        passes += engine.last_tick.forward_passes
    times.sort()
    return {
        "mode": str(mode), "sessions": sessions, "ticks": ticks, "k": k, "device": str(backbone.device),
        "tick_ms_median": round(1000 * statistics.median(times), 2),
        "tick_ms_p95": round(1000 * times[int(0.95 * (len(times) - 1))], 2),
        "forward_passes": passes, "slices_judged": slices,
        "forward_passes_per_slice_period": round(passes / (ticks / slice_every), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--slice-every", type=int, default=10, help="ticks between slices (a 2 s slice period)")
    parser.add_argument("--forecast-tokens", type=int, default=4)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    backbone = load_backbone(args.model, adapter=None, device=args.device, dtype=args.dtype)
    run(backbone, Mode.DUO, 1, 5, args.slice_every, args.forecast_tokens)  # warm-up
    rows = []
    for n in args.sessions:
        for mode in (Mode.DUO, Mode.TDM):
            row = run(backbone, mode, n, args.ticks, args.slice_every, args.forecast_tokens)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\n{'mode':<5} {'sessions':>8} {'tick p50 ms':>12} {'tick p95 ms':>12} {'passes/slice period':>20}")
    for r in rows:
        print(f"{r['mode']:<5} {r['sessions']:>8} {r['tick_ms_median']:>12} {r['tick_ms_p95']:>12} "
              f"{r['forward_passes_per_slice_period']:>20}")
    print(f"(device {rows[0]['device']}, {torch.get_num_threads()} threads, {args.ticks} ticks, "
          f"slice every {args.slice_every} ticks, k={args.forecast_tokens})")


if __name__ == "__main__":
    main()

"""`passes`: forward passes and tick time per slice period, DUO against time division and naive decoding."""

from __future__ import annotations

import argparse
import copy
import time

import torch

from duo.engine.config import Mode
from duo.engine.loader import Backbone

from ..engine_cpu import BACKGROUND
from ..engine_cpu import run as run_ticks
from .report import emit
from .timing import pct, release, sync
from .workload import QUESTION


def naive(backbone: Backbone, n: int, ticks: int, slice_every: int, k: int) -> dict:
    """Per-session `generate`-style decoding: every channel of every session is its own forward pass."""
    model, tok, dev = backbone.model, backbone.tokenizer, backbone.device
    prompt = tok(QUESTION, return_tensors="pt")["input_ids"].to(dev)
    slice_ids = torch.tensor([[*tok(BACKGROUND)["input_ids"], backbone.prediction_id]], device=dev)
    states, passes, times = [], 0, []
    with torch.inference_mode():
        for _ in range(n):
            out = model(input_ids=prompt, use_cache=True)
            states.append([out.past_key_values, out.logits[:, -1:].argmax(-1)])
        for t in range(ticks):
            sync()
            t0 = time.perf_counter()
            for st in states:
                out = model(input_ids=st[1], past_key_values=st[0], use_cache=True)
                st[1] = out.logits[:, -1:].argmax(-1)
                passes += 1
                if t % slice_every == 0:  # the input channel: its own copy of the context, then k forecasts
                    fork = copy.deepcopy(st[0])
                    nxt = model(input_ids=slice_ids, past_key_values=fork, use_cache=True).logits[:, -1:].argmax(-1)
                    passes += 1
                    for _ in range(k - 1):
                        nxt = model(input_ids=nxt, past_key_values=fork, use_cache=True).logits[:, -1:].argmax(-1)
                        passes += 1
            _ = [int(st[1]) for st in states]  # the host reads every session's token, as a server must
            sync()
            times.append(time.perf_counter() - t0)
    return {"mode": "naive", "sessions": n, "ticks": ticks, "k": k, "tick_ms_median": pct(times, 0.5),
            "tick_ms_p95": pct(times, 0.95), "forward_passes": passes,
            "forward_passes_per_slice_period": round(passes / (ticks / slice_every), 2)}


def passes(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    run_ticks(backbone, Mode.DUO, 1, 5, args.slice_every, args.forecast_tokens)  # warm-up
    release()
    for n in args.sessions:
        for mode in (Mode.DUO, Mode.TDM):
            rows.append(emit({"bench": "passes", **run_ticks(backbone, mode, n, args.ticks, args.slice_every,
                                                             args.forecast_tokens)}))
            release()
        if n <= args.naive_max:
            rows.append(emit({"bench": "passes", **naive(backbone, n, args.ticks, args.slice_every,
                                                         args.forecast_tokens)}))
    return rows

"""`capacity`: the most concurrent sessions that stay real time (p99 tick <= 50 ms, every reply >= 20 tokens/s)."""

from __future__ import annotations

import argparse

import torch

from duo.engine.loader import Backbone

from .report import emit
from .workload import Workload, engine_options


def capacity(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     options=engine_options(args))
        row = {"bench": "capacity", **w.run(args.seconds)}
        w.close()
        row["realtime"] = (row["tick_ms_p99"] <= 50 and row["tokens_per_s_min"] >= 20
                           and row["captures_while_timed"] == 0)
        rows.append(emit(row))
        torch.cuda.empty_cache()
        if not row["realtime"]:
            break
    return rows

"""`warmup`: how long `Engine.warmup` takes for a `max_sessions`, and what its graphs and pool hold."""

from __future__ import annotations

import argparse
import time

import torch

from duo.engine.config import EngineConfig
from duo.engine.llm_engine import Engine
from duo.engine.loader import Backbone

from .report import emit
from .timing import release, sync
from .workload import engine_options


def warmup(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    """What the server does before it says ready: `Engine.warmup` for `max_sessions` of each count (every graph
    shape those sessions can produce, over the pool sized as a server sizes it), timed, with the graphs' memory."""
    rows = []
    for n in args.sessions:
        release()
        before = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
        engine = Engine(backbone, EngineConfig(max_sessions=n, max_context=args.max_context,
                                               **engine_options(args)))
        pool = torch.cuda.memory_allocated() - before if torch.cuda.is_available() else 0
        start = time.perf_counter()
        engine.warmup()
        sync()
        seconds = time.perf_counter() - start
        graphs = engine.runner.graphs
        row = {"bench": "warmup", "max_sessions": n, "max_context": engine.vocab.max_context,
               "seconds": round(seconds, 1), "graphs": len(graphs.graphs) if graphs else 0,
               "shapes_covered": len(graphs.shapes()) if graphs else 0, "kv_blocks": engine.kv.num_blocks,
               "kv_gib": round(pool / 2**30, 2)}
        if torch.cuda.is_available():
            row["graphs_gib"] = round((torch.cuda.memory_allocated() - before - pool) / 2**30, 2)
        rows.append(emit(row))
        del engine, graphs
    release()
    return rows

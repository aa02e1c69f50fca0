"""`floor`: a tick's cost against a plain decode step of the same batch and the memory-bandwidth floor.

The floor is every byte a tick must read (this GPU's weights and the sessions' KV) at the measured read
rate; under tensor parallelism it adds two all-reduces a layer, each timed alone.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
from transformers import StaticCache

from duo.engine.attention import ATTN_IMPLEMENTATION
from duo.engine.loader import Backbone
from duo.engine.parallel import TensorParallel

from .models import local_bytes
from .report import emit
from .timing import sync, timed
from .workload import Workload, engine_options


def allreduce_ms(group: TensorParallel, tokens: int, hidden: int) -> float:
    """One all-reduce of a tick's activations `[tokens, hidden]` in bf16, alone (every rank calls it)."""
    x = torch.ones(tokens, hidden, dtype=torch.bfloat16, device=group.device)
    return timed(lambda: dist.all_reduce(x))


def bandwidth(device: str) -> dict[str, float]:
    """The device memory's rate in bytes/s, measured twice: a copy (read + write counted) and a pure read (a sum).

    On HBM the two agree (one rate, whichever way bytes move); the floor divides the bytes a tick must read by
    the read rate, the copy is printed beside it as a check.
    """
    x = torch.randint(0, 100, (1 << 30,), dtype=torch.int32, device=device).to(torch.bfloat16)  # 2 GiB, not zeros
    y = torch.empty_like(x)

    def rate(fn, moved: int) -> float:
        for _ in range(3):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        sync()
        return 20 * moved / (time.perf_counter() - t0)

    nbytes = x.numel() * x.element_size()
    return {"copy": rate(lambda: y.copy_(x), 2 * nbytes), "read": rate(lambda: x.sum(dtype=torch.float32), nbytes)}


def plain_decode(backbone: Backbone, n: int, context: int) -> dict:
    """transformers' own decode step for a batch of n at `context` (StaticCache), eager and as a CUDA graph."""
    model, dev = backbone.model, backbone.device
    model.config._attn_implementation = "sdpa"
    try:
        cache = StaticCache(config=model.config, max_cache_len=context + 64)  # steps may advance the write position
        ids = torch.randint(100, 1000, (n, context), device=dev)
        with torch.inference_mode():
            for lo in range(0, context, 256):  # prefill in chunks
                model(input_ids=ids[:, lo:lo + 256], past_key_values=cache, use_cache=True,
                      cache_position=torch.arange(lo, min(lo + 256, context), device=dev))
            step_ids = ids[:, -1:].clone()
            pos = torch.tensor([context], device=dev)

            def step() -> torch.Tensor:
                return model(input_ids=step_ids, past_key_values=cache, use_cache=True, cache_position=pos).logits

            eager = timed(step)
            graphed = None
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    step(), step()
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    step()
                graphed = timed(g.replay)
            except Exception as exc:  # report what ran
                print(json.dumps({"plain_decode_graph_error": f"{type(exc).__name__}: {exc}"[:300]}))
        return {"hf_step_eager_ms": eager, "hf_step_graph_ms": graphed}
    finally:
        model.config._attn_implementation = ATTN_IMPLEMENTATION
        torch.cuda.empty_cache()


def floor(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    bw = bandwidth(str(backbone.device))
    weights = local_bytes(backbone.model)
    group = backbone.parallel
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     options=engine_options(args))
        duo = w.run(args.seconds / 2)
        w.close()
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     options=engine_options(args))
        plain = w.run(args.seconds / 2, slices=False)
        kv_bytes = n * duo["context_mean"] * w.engine.kv.bytes_per_token  # this GPU's kv heads
        w.close()
        torch.cuda.empty_cache()
        floor_ms = round(1000 * (weights + kv_bytes) / bw["read"], 2)  # every byte read once, at the read rate
        row = {"bench": "floor", "sessions": n, "context": duo["context_mean"],
               "duo_tick_ms_p50": duo["tick_ms_p50"], "duo_tick_ms_p99": duo["tick_ms_p99"],
               "runner_plain_decode_ms_p50": plain["tick_ms_p50"], "floor_ms": floor_ms,
               "read_GBps": round(bw["read"] / 1e9), "copy_GBps_read_plus_write": round(bw["copy"] / 1e9),
               "duo_over_runner_plain": round(duo["tick_ms_p50"] / plain["tick_ms_p50"], 2)}
        if group is None:
            hf = plain_decode(backbone, n, duo["context_mean"])
            best_hf = min(x for x in (hf["hf_step_eager_ms"], hf["hf_step_graph_ms"]) if x)
            row.update(hf, duo_over_hf_step=round(duo["tick_ms_p50"] / best_hf, 2))
        else:  # two all-reduces a layer (o_proj, down_proj) on top of what each GPU reads
            reduce_ms = args.allreduce_ms[n]
            floor_ms = round(floor_ms + 2 * backbone.model.config.num_hidden_layers * reduce_ms, 2)
            row.update(tensor_parallel=group.size, allreduce_ms=reduce_ms, floor_ms=floor_ms)
        row["duo_over_floor"] = round(duo["tick_ms_p50"] / floor_ms, 2)
        rows.append(emit(row))
    return rows

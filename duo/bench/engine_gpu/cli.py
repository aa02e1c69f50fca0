"""The engine at scale on one GPU: forward passes, capacity, cost against the floor, KV per session.

The command line of `python -m duo.bench.engine_gpu BENCH` (the package's docstring tells the benches):
it loads the model, joins the tensor-parallel group under torchrun when asked, runs one bench and prints
its rows.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from duo.engine.follower import follow
from duo.engine.parallel import TensorParallel, torchrun_argv, under_torchrun

from .capacity import capacity
from .floor import allreduce_ms, floor
from .kv import kv
from .models import ARCHS, load
from .passes import passes
from .profile import profile_ticks
from .report import table
from .warmup import warmup


def main() -> None:
    # named as it is run: the default, the file run, is the package's `__main__.py`
    parser = argparse.ArgumentParser(prog="python -m duo.bench.engine_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["passes", "capacity", "floor", "kv", "profile", "warmup"])
    parser.add_argument("--arch", default="embedded", choices=["embedded", *ARCHS])
    parser.add_argument("--model", default=None, help="checkpoint or embedded name (default: the embedded default)")
    parser.add_argument("--sessions", type=int, nargs="+", default=None)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--max-context", type=int, default=None, help="the engine's window (warmup; default: "
                        "the model's)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slice-s", type=float, default=2.0)
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--slice-every", type=int, default=40, help="ticks per slice period (passes bench)")
    parser.add_argument("--naive-max", type=int, default=8)
    parser.add_argument("--forecast-tokens", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tensor-parallel", type=int, default=1, help="GPUs of this host to split the model over")
    parser.add_argument("--attention", default="paged", choices=["paged", "gather"],
                        help="attention: every token in place over the paged pool, or the gathered reference path")
    parser.add_argument("--tick-order", default="overlapped", choices=["overlapped", "serial"],
                        help="ticks launched before the previous one's tokens reach the host (the engine's default "
                             "on CUDA), or one after the other")
    parser.add_argument("--layers", default="fused", choices=["fused", "plain"],
                        help="decoder layers: fused kernels (duo.engine.fused, the engine's default on CUDA) or "
                        "transformers' own")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    defaults = {"passes": [1, 8, 32], "capacity": [64, 128, 192, 256, 320, 384], "floor": [64, 128], "kv": [1],
                "profile": [256], "warmup": [256, 1024]}
    args.sessions = args.sessions or defaults[args.bench]
    group = None
    if args.tensor_parallel > 1:
        if not under_torchrun():
            argv = torchrun_argv(args.tensor_parallel, "duo.bench.engine_gpu")
            os.execv(argv[0], argv)
        group = TensorParallel.join(args.tensor_parallel)
        args.naive_max = 0  # the naive baseline runs the model outside the engine, on rank 0 alone
    backbone = load(args.arch, args.device, group, args.model)
    if group is not None:  # every rank, before the followers start following
        hidden = backbone.model.config.hidden_size
        args.allreduce_ms = {n: allreduce_ms(group, n + n // 4 + 1, hidden) for n in args.sessions}
        if not group.leader:
            follow(group, backbone)
            group.close()
            return
    benches = {"passes": passes, "capacity": capacity, "floor": floor, "kv": kv, "profile": profile_ticks,
               "warmup": warmup}
    rows = benches[args.bench](backbone, args)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for r in rows:
        r.update(arch=args.arch, device=device, gpus=group.size if group else 1, attention=args.attention,
                 layers=args.layers, tick_order=args.tick_order)
    if group is not None:
        group.close()
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    table(rows)
    print(f"({args.arch} on {device})")

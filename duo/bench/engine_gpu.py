"""The engine at scale on one GPU: forward passes, capacity, cost against the floor, KV per session.

    python -m duo.bench.engine_gpu passes   [--arch embedded|qwen2.5-7b] [--sessions 1 8 32]
    python -m duo.bench.engine_gpu capacity [--arch ...] [--sessions 64 128 192 256] [--seconds 8]
    python -m duo.bench.engine_gpu floor    [--arch ...] [--sessions 64 128]
    python -m duo.bench.engine_gpu kv       [--arch ...]
    python -m duo.bench.engine_gpu warmup   [--arch ...] [--sessions 256 1024] [--max-context 4096]

Each prints one JSON object per measurement, then a summary table; `--json-out FILE` keeps the rows.
`qwen2.5-7b` and `qwen2.5-72b` are those architectures with random bf16 weights (speed does not depend on
weight values) and the embedded tokenizer; `embedded` is the shipped default model with its adapter.

`--tensor-parallel N` runs the engine split over N GPUs of this host (`duo.engine.parallel`), relaunching
itself under torchrun: rank 0 runs the bench, the other ranks follow its engines. What runs the model
outside the engine (the naive baseline of `passes`, transformers' own step in `floor`) is left out there;
`floor` adds the all-reduce time measured alone to the floor of the weights and KV each GPU reads.

Workload (`capacity`, `floor`): every session streams a reply (run to length, end-of-turn ignored) over a
conversation of `--context` tokens while a slice of background speech arrives every `--slice-s` seconds
of wall time per session, staggered, and is judged (k forecast tokens, then ignored) alongside the reply.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM, StaticCache

from duo.engine.attention import ATTN_IMPLEMENTATION, register_attention
from duo.engine.config import EngineConfig, Mode, SamplingParams, SessionConfig, Thresholds
from duo.engine.cuda_graphs import PREFILL
from duo.engine.follower import follow
from duo.engine.llm_engine import Engine
from duo.engine.loader import Backbone, load_backbone
from duo.engine.parallel import TensorParallel, torchrun_argv, under_torchrun
from duo.engine.plan import TickShape

from .engine_cpu import BACKGROUND
from .engine_cpu import run as run_ticks

QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu")
QWEN25_72B = dict(QWEN25_7B, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                  num_attention_heads=64, num_key_value_heads=8)
ARCHS = {"qwen2.5-7b": QWEN25_7B, "qwen2.5-72b": QWEN25_72B}
QUESTION = "please tell me a very long story about the sea"
FILLER = "we talked about the weather the trains the garden and what to cook for dinner tonight"


def load(arch: str, device: str, group: TensorParallel | None = None, model: str | None = None) -> Backbone:
    """`model` (default: the embedded default) is benched as is, or lends its tokenizer to a random `arch`."""
    embedded = load_backbone(model, adapter="auto", device=device, dtype="bfloat16")
    if arch == "embedded":
        if group is not None:
            raise SystemExit("--tensor-parallel needs a larger --arch than the embedded model")
        return embedded
    register_attention()
    config = Qwen2Config(**ARCHS[arch])
    if group is None:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                     attn_implementation=ATTN_IMPLEMENTATION).eval()
    else:  # this rank's shard, by the model's tensor-parallel plan, randomly initialized
        group.check(config)
        model = Qwen2ForCausalLM.from_pretrained(None, config=config, state_dict={}, dtype=torch.bfloat16,
                                                 **group.load_kwargs())
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
        model.eval()
    return dataclasses.replace(embedded, model=model, name=f"{arch} (random bf16)", parallel=group)


def local_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights this device holds (its shards, under tensor parallelism)."""
    local = (p.to_local() if hasattr(p, "to_local") else p for p in model.parameters())
    return sum(t.numel() * t.element_size() for t in local)


def allreduce_ms(group: TensorParallel, tokens: int, hidden: int) -> float:
    """One all-reduce of a tick's activations `[tokens, hidden]` in bf16, alone (every rank calls it)."""
    x = torch.ones(tokens, hidden, dtype=torch.bfloat16, device=group.device)
    return timed(lambda: dist.all_reduce(x))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def history(backbone: Backbone, context: int) -> list[dict[str, str]]:
    """Turns that fill about `context` tokens of conversation."""
    turns: list[dict[str, str]] = []
    per_turn = len(backbone.tokenizer(FILLER)["input_ids"]) + 5
    for i in range(max(0, context - 60) // per_turn):
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": FILLER})
    if turns and turns[-1]["role"] == "user":
        turns.pop()
    return turns


class Workload:
    """`n` sessions streaming replies, each hearing background speech every `slice_s` seconds."""

    def __init__(self, backbone: Backbone, n: int, context: int, k: int, slice_s: float, growth: int,
                 paged: bool = True) -> None:
        blocks = n * ((context + growth + 64) // 16 + 8) + 64  # the conversation, the reply, an input channel
        self.engine = Engine(backbone, EngineConfig(initial_blocks=blocks, max_blocks=2 * blocks,
                                                    max_sessions=max(n, 1), paged_attention=paged))
        config = SessionConfig(forecast_tokens=k, thresholds=Thresholds(process=2.0, ignore=0.0),  # ignore all
                               sampling=SamplingParams(max_new_tokens=4096, ignore_eos=True))
        turns = history(backbone, context)
        self.sessions = [self.engine.open_session(config, history=turns) for _ in range(n)]
        self.slice_s, self.next_slice, self.growth = slice_s, [0.0] * n, growth
        self.slices = 0

    def keep_replying(self) -> None:
        for s in self.sessions:
            if s.reply is None and not s.inbox and (s.input is None or not s.input.texts):
                s.push_slice(QUESTION, judge=False)
                s.respond()

    def start(self, now: float) -> None:
        n = len(self.sessions)
        self.next_slice = [now + self.slice_s * (i + 0.5) / n for i in range(n)]

    def arrivals(self, now: float) -> None:
        for i, s in enumerate(self.sessions):
            if now >= self.next_slice[i]:
                s.push_slice(BACKGROUND)
                self.next_slice[i] += self.slice_s
                self.slices += 1

    def produced(self) -> list[int]:
        return [s.reply.detok.num_tokens if s.reply else 0 for s in self.sessions]

    def warm_graphs(self) -> None:
        """Capture the shapes this load produces before timing it (rows: replies plus forecasting inputs).

        A load above the largest bucket has no graph to capture: its ticks run eagerly (and say so in the row).
        """
        graphs = self.engine.runner.graphs
        if graphs is None:
            return
        n, longest = len(self.sessions), max(s.last.total_len for s in self.sessions)
        top = graphs.shape_for(TickShape(n + n // 4 + 1, 0, 0, 1))  # replies plus the inputs judged at once
        rows = [d for d in graphs.decode if n <= d <= (top.decode if top else graphs.decode[-1])]
        shapes = {graphs.shape_for(TickShape(d, p, w if p else 0, keys)) for d in rows
                  for p, w in PREFILL for keys in range(longest, longest + self.growth + 1, 128)}
        self.engine.runner.warmup(sorted((s for s in shapes if s is not None),
                                         key=lambda s: (s.decode, s.prefill, s.keys)))

    def run(self, seconds: float, slices: bool = True) -> dict:
        self.keep_replying()
        for _ in range(4):
            self.engine.step()
        self.warm_graphs()
        now = time.perf_counter()
        self.start(now)
        end_warm = now + 1.0
        while time.perf_counter() < end_warm:  # capture stragglers, settle clocks
            if slices:
                self.arrivals(time.perf_counter())
            self.keep_replying()
            self.engine.step()
        before, passes, self.slices = self.produced(), self.engine.forward_passes, 0
        runner = self.engine.runner
        graphs, captured, eager = runner.graphs, runner.captures, runner.eager_ticks
        ticks: list[float] = []
        start = time.perf_counter()
        while (t0 := time.perf_counter()) - start < seconds:
            if slices:
                self.arrivals(t0)
            self.keep_replying()
            self.engine.step()
            ticks.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        rates = [(b - a) / elapsed for a, b in zip(before, self.produced(), strict=True) if b >= a]
        return {"sessions": len(self.sessions), "ticks": len(ticks), "tick_ms_p50": pct(ticks, 0.5),
                "tick_ms_p99": pct(ticks, 0.99), "tokens_per_s_min": round(min(rates), 1),
                "tokens_per_s_median": round(statistics.median(rates), 1), "slices_judged": self.slices,
                "forward_passes": self.engine.forward_passes - passes,
                "context_mean": round(statistics.mean(s.last.total_len for s in self.sessions)),
                "graphs": len(graphs.graphs) if graphs else 0,
                "captures_while_timed": runner.captures - captured,
                "eager_ticks_while_timed": runner.eager_ticks - eager}

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions = []  # sessions hold the pool too
        del self.engine
        release()


def release() -> None:
    """Free a finished engine's pool and graphs before the next one sizes its pool from free memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def capacity(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     paged=args.attention == "paged")
        row = {"bench": "capacity", **w.run(args.seconds)}
        w.close()
        row["realtime"] = (row["tick_ms_p99"] <= 50 and row["tokens_per_s_min"] >= 20
                           and row["captures_while_timed"] == 0)
        rows.append(emit(row))
        torch.cuda.empty_cache()
        if not row["realtime"]:
            break
    return rows


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


def floor(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    rows = []
    bw = bandwidth(str(backbone.device))
    weights = local_bytes(backbone.model)
    group = backbone.parallel
    for n in args.sessions:
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     paged=args.attention == "paged")
        duo = w.run(args.seconds / 2)
        w.close()
        w = Workload(backbone, n, args.context, args.forecast_tokens, args.slice_s, growth=1024,
                     paged=args.attention == "paged")
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


def kv(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    """KV blocks a session holds while it replies and judges a slice, against one channel of its context."""
    engine = Engine(backbone, EngineConfig(initial_blocks=4096, max_blocks=4096, cuda_graphs=False))
    free = engine.kv.num_free
    s = engine.open_session(SessionConfig(thresholds=Thresholds(process=2.0, ignore=2.0),  # keep judging
                                          sampling=SamplingParams(max_new_tokens=4096, ignore_eos=True)),
                            history=history(backbone, args.context))
    s.push_slice(QUESTION, judge=False)
    s.respond()
    for _ in range(40):
        engine.step()
    s.push_slice(BACKGROUND, final=False)
    for _ in range(2):
        engine.step()
    held = free - engine.kv.num_free
    assert s.input is not None
    one_channel = -(-s.last.total_len // engine.kv.block_size)
    row = {"bench": "kv", "context": s.last.total_len, "input_tokens": len(s.input.seq),
           "blocks_held": held, "blocks_one_channel": one_channel, "ratio": round(held / one_channel, 3),
           "naive_copy_ratio": round((one_channel + -(-s.input.seq.total_len // engine.kv.block_size))
                                     / one_channel, 3),
           "bytes_per_token": engine.kv.bytes_per_token}
    s.close()
    return [emit(row)]


def warmup(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    """What the server does before it says ready: `Engine.warmup` for `max_sessions` of each count (every graph
    shape those sessions can produce, over the pool sized as a server sizes it), timed, with the graphs' memory."""
    rows = []
    for n in args.sessions:
        release()
        before = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
        engine = Engine(backbone, EngineConfig(max_sessions=n, max_context=args.max_context,
                                               paged_attention=args.attention == "paged"))
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


def emit(row: dict) -> dict:
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> None:
    print()
    for bench in dict.fromkeys(r["bench"] for r in rows):
        sel = [r for r in rows if r["bench"] == bench]
        keys = list(dict.fromkeys(k for r in sel for k in r if k != "bench"))
        print(f"[{bench}]")
        print("  " + " | ".join(keys))
        for r in sel:
            print("  " + " | ".join(str(r.get(k, "")) for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["passes", "capacity", "floor", "kv", "warmup"])
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
                        help="decode attention: in place over the paged pool, or the gathered reference path")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    defaults = {"passes": [1, 8, 32], "capacity": [64, 128, 192, 256, 320, 384], "floor": [64, 128], "kv": [1],
                "warmup": [256, 1024]}
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
    benches = {"passes": passes, "capacity": capacity, "floor": floor, "kv": kv, "warmup": warmup}
    rows = benches[args.bench](backbone, args)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for r in rows:
        r.update(arch=args.arch, device=device, gpus=group.size if group else 1, attention=args.attention)
    if group is not None:
        group.close()
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    table(rows)
    print(f"({args.arch} on {device})")


if __name__ == "__main__":
    main()

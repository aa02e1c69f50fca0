"""The load `capacity` and `floor` time: sessions streaming replies while background speech is judged.

Every session streams a reply (run to length, end-of-turn ignored) over a conversation of `context`
tokens while a slice of background speech arrives every `slice_s` seconds of wall time per session,
staggered, and is judged (k forecast tokens, then ignored) alongside the reply.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, Thresholds
from duo.engine.cuda_graphs import PREFILL
from duo.engine.llm_engine import Engine
from duo.engine.loader import Backbone
from duo.engine.plan import TickShape

from ..engine_cpu import BACKGROUND
from .timing import pct, release

QUESTION = "please tell me a very long story about the sea"
FILLER = "we talked about the weather the trains the garden and what to cook for dinner tonight"


def engine_options(args: argparse.Namespace) -> dict:
    """The engine's settings that the command line compares: attention in place or gathered, fused layers,
    overlapped ticks."""
    return {"paged_attention": args.attention == "paged", "fused_layers": args.layers == "fused",
            "overlap_ticks": args.tick_order == "overlapped"}


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
                 options: dict | None = None) -> None:
        blocks = n * ((context + growth + 64) // 16 + 8) + 64  # the conversation, the reply, an input channel
        self.engine = Engine(backbone, EngineConfig(initial_blocks=blocks, max_blocks=2 * blocks,
                                                    max_sessions=max(n, 1), **(options or {})))
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
        """Capture before timing what the server captures before it says ready: in place (`paged`), every
        shape the graphs cover (`Engine.warmup`'s set, a few hundred at most without a key dimension).
        Gathered, each row count multiplies by the key buckets, so only the shapes this load reaches: replies
        plus forecasting inputs, every row count below that, keys from the longest conversation on.

        A load above the largest bucket has no graph to capture: its ticks run eagerly (and say so in the row).
        """
        graphs = self.engine.runner.graphs
        if graphs is None:
            return
        if graphs.paged:
            self.engine.runner.warmup()
            return
        n, longest = len(self.sessions), max(s.last.total_len for s in self.sessions)
        top = graphs.shape_for(TickShape(n + n // 4 + 1, 0, 0, 1))  # replies plus the inputs judged at once
        rows = [d for d in graphs.decode if d <= (top.decode if top else graphs.decode[-1])]
        shapes = {graphs.shape_for(TickShape(d, p, w if p else 0, keys)) for d in rows
                  for p, w in PREFILL for keys in range(longest, longest + self.growth + 1, 128)}
        self.engine.runner.warmup(sorted((s for s in shapes if s is not None),
                                         key=lambda s: (s.decode, s.prefill, s.keys)))

    def run(self, seconds: float, slices: bool = True) -> dict:
        self.keep_replying()
        for _ in range(4):
            self.engine.step()
        self.warm_graphs()
        gc.collect()
        gc.freeze()  # as the server does once warm: a full collection over the model and libraries stalls a tick
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
        kept = set(graphs.graphs) if graphs else set()
        ticks: list[float] = []
        tokens: list[int] = []  # admitted in each tick
        start = time.perf_counter()
        while (t0 := time.perf_counter()) - start < seconds:
            if slices:
                self.arrivals(t0)
            self.keep_replying()
            self.engine.step()
            ticks.append(time.perf_counter() - t0)
            tokens.append(self.engine.last_tick.tokens)
        elapsed = time.perf_counter() - start
        # an overlapped step waits for the tick launched by the step before: what made the slowest steps slow
        lag = 1 if self.engine.overlap else 0
        slowest = sorted(range(lag, len(ticks)), key=ticks.__getitem__)[-max(1, len(ticks) // 100):]
        late = sorted(f"{g.decode}+{g.prefill}x{g.width}" for g in set(graphs.graphs if graphs else ()) - kept)
        rates = [(b - a) / elapsed for a, b in zip(before, self.produced(), strict=True) if b >= a]
        return {"sessions": len(self.sessions), "ticks": len(ticks), "tick_ms_p50": pct(ticks, 0.5),
                "tick_ms_p99": pct(ticks, 0.99), "tokens_per_s_min": round(min(rates), 1),
                "tokens_per_s_median": round(statistics.median(rates), 1), "slices_judged": self.slices,
                "forward_passes": self.engine.forward_passes - passes,
                "context_mean": round(statistics.mean(s.last.total_len for s in self.sessions)),
                "graphs": len(graphs.graphs) if graphs else 0,
                "captures_while_timed": runner.captures - captured, "shapes_captured_while_timed": late,
                "eager_ticks_while_timed": runner.eager_ticks - eager,
                "tokens_per_tick_median": int(statistics.median(tokens)) if tokens else 0,
                "tokens_behind_slowest_1pct": round(statistics.mean([tokens[i - lag] for i in slowest] or [0]))}

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions = []  # sessions hold the pool too
        del self.engine
        gc.unfreeze()
        release()

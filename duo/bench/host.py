"""Host work of one engine tick, without the forward: what the CPU spends per tick while the GPU waits.

The real `Engine.step` runs (inboxes, admission, `plan_tick`, the payload, the sampled rows applied to the
sessions, events) over a tiny random-config model whose device work is stubbed out: the forward returns no
logits and the sampler's device half returns a fixed token per row, so only host work is timed. The load is
that of `engine_gpu capacity`: every session streams a reply over a conversation of `--context` tokens and
hears a slice of background speech once per `--slice-every` ticks (staggered), judged (k forecast tokens,
then ignored) alongside the reply. Prints one JSON row per session count, then a table; `exposed` is the part
of a tick's host work outside its forward (what the device waits for): the rest, decoding the previous tick's
text, runs while the forward does.

    python -m duo.bench.host [--sessions 64 256 1024] [--ticks 40] [--attention paged|gather] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from duo.engine import llm_engine
from duo.engine.attention import ATTN_IMPLEMENTATION
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, Thresholds
from duo.engine.llm_engine import Engine
from duo.engine.loader import Backbone, load_backbone
from duo.engine.model_runner import ModelRunner
from duo.engine.slot_table import SlotTable

BACKGROUND = "and then she told me the train was late again so we walked all the way home"
QUESTION = "please tell me a very long story about the sea"
FILLER = "we talked about the weather the trains the garden and what to cook for dinner tonight"
STORY = ("Once upon a time a small boat left the harbour at dawn, and the sea was calm and grey. The sailor "
         "sang an old song about the wind, the gulls and the long road home across the water.")


def tiny_backbone() -> Backbone:
    """The embedded tokenizer and chat template over a 2-layer random Llama (the forward is stubbed anyway)."""
    embedded = load_backbone(None, adapter=None, device="cpu")
    config = LlamaConfig(vocab_size=len(embedded.tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    return dataclasses.replace(embedded, model=model.eval(), name="tiny random Llama")


def history(backbone: Backbone, context: int) -> list[dict[str, str]]:
    """Turns that fill about `context` tokens of conversation."""
    per_turn = len(backbone.tokenizer(FILLER)["input_ids"]) + 5
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": FILLER}
             for i in range(max(0, context - 60) // per_turn)]
    return turns[: len(turns) // 2 * 2]


@contextmanager
def stubbed_device(backbone: Backbone) -> Iterator[None]:
    """No forward and no sampling math: each row gets the next token of a story, the states fixed.

    The payload is still copied, into one buffer kept across ticks, as a step copies it into its graph's.
    """
    story = backbone.tokenizer(STORY)["input_ids"]
    counter = iter(range(1 << 62))
    device_buffer = torch.empty(0, dtype=torch.int64)

    def execute(self: ModelRunner, step, fill) -> torch.Tensor:
        nonlocal device_buffer
        if device_buffer.numel() < step.size:
            device_buffer = torch.empty(2 * step.size, dtype=torch.int64)
        fill(device_buffer[: step.size])
        rows = step.keep if not step.graph else step.shape.decode + step.shape.prefill
        return torch.zeros(rows, 1)

    def choose(logits, params, generators, state_ids, upload=None) -> torch.Tensor:
        n = logits.shape[0]
        base = next(counter)
        ids = torch.tensor([story[(base + i) % len(story)] for i in range(n)], dtype=torch.float32)
        return torch.cat([ids[:, None], torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3)], dim=1)

    saved = ModelRunner.execute, llm_engine.choose
    ModelRunner.execute, llm_engine.choose = execute, choose
    try:
        yield
    finally:
        ModelRunner.execute, llm_engine.choose = saved


class Load:
    """`n` sessions streaming replies, each hearing background speech once per `slice_every` ticks."""

    def __init__(self, backbone: Backbone, n: int, context: int, k: int, slice_every: int,
                 in_place: bool = True) -> None:
        blocks = n * ((context + 2048) // 16 + 8) + 64
        self.engine = Engine(backbone, EngineConfig(initial_blocks=blocks, max_blocks=blocks, max_sessions=n,
                                                    max_tick_tokens=2048, cuda_graphs=False))
        runner = self.engine.runner
        if in_place and runner.slots is None:  # plan as on CUDA: rows read through the device's slot table
            runner.slots = SlotTable.sized(2 * n, self.engine.vocab.max_context, runner.device)
        config = SessionConfig(forecast_tokens=k, thresholds=Thresholds(process=2.0, ignore=0.0),  # ignore all
                               sampling=SamplingParams(max_new_tokens=4096, ignore_eos=True))
        turns = history(backbone, context)
        self.sessions = [self.engine.open_session(config, history=turns) for _ in range(n)]
        self.slice_every, self.t, self.tokens = slice_every, 0, 0
        self.beside = 0.0  # CPU seconds of this tick spent beside the forward (decoding the last tick's text)
        decode = self.engine.text.decode

        def timed_decode(live: dict) -> None:
            start = time.thread_time()
            decode(live)
            self.beside += time.thread_time() - start

        self.engine.text.decode = timed_decode  # type: ignore[method-assign]

    def before_tick(self) -> None:
        for i, s in enumerate(self.sessions):
            if s.reply is None and not s.inbox and (s.input is None or not s.input.texts):
                s.push_slice(QUESTION, judge=False)
                s.respond()
            elif (self.t + i) % self.slice_every == 0:
                s.push_slice(BACKGROUND)
        self.t += 1

    def tick(self) -> tuple[float, float, float]:
        """CPU time of the tick's thread (what other processes on the machine do not inflate), the part of it
        the device does not wait for (work done while the forward runs), and wall time."""
        self.before_tick()
        self.beside = 0.0
        cpu, wall = time.thread_time(), time.perf_counter()
        self.engine.step()
        self.tokens += self.engine.last_tick.tokens
        return time.thread_time() - cpu, self.beside, time.perf_counter() - wall


def measure(backbone: Backbone, n: int, args: argparse.Namespace) -> dict:
    load = Load(backbone, n, args.context, args.forecast_tokens, args.slice_every, args.attention == "paged")
    for _ in range(args.slice_every + 8):  # the prefixes, the first replies and one slice period
        load.tick()
    load.tokens = 0
    times = np.array([load.tick() for _ in range(args.ticks)]) * 1000
    if not load.tokens or load.engine.sessions.keys() != {s.id for s in load.sessions}:
        raise SystemExit("host bench: the ticks ran no work or sessions failed (see the log): nothing to time")
    cpu, beside, wall = times[:, 0], times[:, 1], times[:, 2]
    exposed = cpu - beside  # what the device waits for: the tick's host work outside the forward
    return {"bench": "host", "sessions": n, "ticks": args.ticks, "context": args.context, "attention": args.attention,
            "host_ms_median": round(float(np.median(cpu)), 2), "host_ms_p90": round(float(np.percentile(cpu, 90)), 2),
            "exposed_ms_median": round(float(np.median(exposed)), 2),
            "beside_forward_ms_median": round(float(np.median(beside)), 2),
            "host_ms_max": round(float(cpu.max()), 2), "wall_ms_median": round(float(np.median(wall)), 2),
            "wall_ms_p90": round(float(np.percentile(wall, 90)), 2), "tokens_mean": round(load.tokens / args.ticks),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--slice-every", type=int, default=40, help="ticks per slice period (2 s at 20 tokens/s)")
    parser.add_argument("--forecast-tokens", type=int, default=4)
    parser.add_argument("--attention", default="paged", choices=["paged", "gather"],
                        help="plan as CUDA's in-place attention does (the device slot table), or with per-tick "
                             "slot tables (the gathered reference path)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the tick's host work is one thread; the stub's small copies need no more
    backbone = tiny_backbone()
    gc.freeze()  # as the server does once the model is loaded and warm: the collector skips what lives on
    rows = []
    with stubbed_device(backbone):
        for n in args.sessions:
            row = measure(backbone, n, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.json_out:
                with open(args.json_out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"\n{'sessions':>8} {'host ms p50':>12} {'host ms p90':>12} {'exposed ms p50':>15}")
    for r in rows:
        print(f"{r['sessions']:>8} {r['host_ms_median']:>12} {r['host_ms_p90']:>12} {r['exposed_ms_median']:>15}")
    print(f"(host work only: CPU ms of the tick's thread, forward stubbed, median of {args.ticks} ticks; exposed: "
          "outside the forward, what the device waits for)")


if __name__ == "__main__":
    main()

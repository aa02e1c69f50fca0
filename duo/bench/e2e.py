"""End to end through the realtime server: end of speech -> first reply token, and barge-in -> reply stopped.

The real server (the embedded model with its shipped adapter, uvicorn on a free loopback port) runs in
this process; N synthetic text clients speak the wire protocol of docs/protocol.md to it over WebSockets,
started staggered over one slice period, each for several rounds. A round:

1. The client says a question as `duo.input.slice` events, one slice every `--slice-gap` seconds; the
   last has `final: true` (the speaker's pause). Reply latency: that last slice sent -> the first
   `response.output_text.delta` of the reply.
2. After `--barge-after` deltas of the (long) reply, the client asks a new question addressed to the
   assistant in one final slice. Barge-in latency: that slice sent -> `response.done` status `cancelled`
   of the old reply. The new question must then be answered: a `response.created` and its first delta
   (answer latency, from the same slice); the client then cancels that answer to keep rounds short.

States are the adapter's own decisions under the default thresholds, never forced. A question whose
final slice is not judged `process` counts as misjudged (as does a question whose first slice was dropped);
a reply that ended before the barge-in was judged counts as a missed barge-in; timeouts, server `error`
events and closed connections count as errors. After anything but a clean round the client reconnects,
so no half-judged input leaks into the next round. Times are client wall time (time.perf_counter) and
include the loopback socket and the server's event loop. Clients and server share this process unless
`--own-process` starts `duo serve` as a child: with hundreds of sessions the clients' own event handling
then no longer takes the server's interpreter.

Prints one JSON line per session count, then a summary table.

    python -m duo.bench.e2e [--sessions 1 8 32] [--device cpu|cuda] [--dtype auto] [--rounds 3] [--own-process]
                            [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from duo.server.inprocess import InProcessServer
from duo.server.own_process import own_process_server

# The tick counters read from /metrics around each session count (to read the latencies in ticks).
COUNTERS = ("duo_ticks_total", "duo_tick_seconds_sum", "duo_batch_sessions_sum", "duo_graph_captures_total",
            "duo_eager_forward_passes_total")

# Phrasings the shipped adapter judges as intended under the default thresholds: the first slice of each
# question `incomplete`, the final one `process` (with a long reply to interrupt); each barge-in `process`.
QUESTIONS: tuple[tuple[str, ...], ...] = (
    ("can you tell me a long story about", "a dragon who learns to fly"),
    ("tell me a story about", "a robot who wants to be a chef"),
    ("can you tell me a story about", "a little cat who goes to the moon"),
    ("can you explain to me how", "a rainbow forms in the sky"),
)
BARGE_INS: tuple[str, ...] = (
    "stop, what time is it in tokyo right now?",
    "wait, how tall is mount everest?",
    "stop, what is the weather like today?",
    "stop, what is the capital of italy?",
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, interpolating linearly between closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Tally:
    """What the clients of one session count saw; latencies in seconds."""

    rounds: int = 0
    misjudged: int = 0
    barge_missed: int = 0
    errors: int = 0
    misjudged_kinds: Counter[str] = field(default_factory=Counter)
    barge_missed_kinds: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    reply: list[float] = field(default_factory=list)
    barge: list[float] = field(default_factory=list)
    answer: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float], q: float) -> float | None:
            v = percentile(values, q)
            return None if v is None else round(1000 * v, 1)

        return {
            "rounds": self.rounds, "clean": self.rounds - self.misjudged - self.errors,
            "misjudged": self.misjudged, "barge_missed": self.barge_missed, "errors": self.errors,
            "misjudged_kinds": dict(self.misjudged_kinds), "barge_missed_kinds": dict(self.barge_missed_kinds),
            "error_kinds": dict(self.error_kinds),
            "reply_ms_p50": ms(self.reply, 50), "reply_ms_p95": ms(self.reply, 95), "reply_samples": len(self.reply),
            "barge_ms_p50": ms(self.barge, 50), "barge_ms_p95": ms(self.barge, 95), "barge_samples": len(self.barge),
            "answer_ms_p50": ms(self.answer, 50), "answer_ms_p95": ms(self.answer, 95),
            "answer_samples": len(self.answer),
        }


class ServerError(Exception):
    """The server sent an `error` event."""


class Misjudged(Exception):
    """The adapter's state for an input was not the intended `process`."""


class Conn:
    """One client connection: send events, wait for a matching one (stamped on arrival)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, max_tokens: int) -> Conn:
        import websockets

        conn = cls(await websockets.connect(url, max_size=1 << 24))
        await conn.until(lambda e: e["type"] == "session.created")
        await conn.send("session.update", session={"max_output_tokens": max_tokens,  # DUO, its duo.* events on
                                                   "audio": {"input": {"turn_detection": {"type": "duo"}}}})
        await conn.until(lambda e: e["type"] == "session.updated")
        return conn

    async def send(self, kind: str, **body: Any) -> float:
        """Send an event; returns the time just before it left."""
        sent = time.perf_counter()
        await self.ws.send(json.dumps({"type": kind, **body}))
        return sent

    async def until(self, match: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], float]:
        while True:
            raw = await self.ws.recv()
            now = time.perf_counter()
            event = json.loads(raw)
            if event["type"] == "error":
                raise ServerError(event["error"]["code"])
            if match(event):
                return event, now

    async def close(self) -> None:
        await self.ws.close()


def _is(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items())


async def one_round(c: Conn, question: tuple[str, ...], barge: str, args: argparse.Namespace, t: Tally) -> None:
    """One question, its reply interrupted by a second question, that one answered (see the module doc)."""
    for text in question[:-1]:
        await c.send("duo.input.slice", text=text, final=False)
        await asyncio.sleep(args.slice_gap)
    end_of_speech = await c.send("duo.input.slice", text=question[-1], final=True)
    state, _ = await c.until(_is("duo.input.state", slice_text=question[-1]))
    if state["state"] != "process" or state["input_text"] != " ".join(question):
        raise Misjudged(f"question: {state['state']} {state['input_text']!r}")
    created, _ = await c.until(_is("response.created"))
    rid = created["response"]["id"]
    _, first = await c.until(_is("response.output_text.delta", response_id=rid))
    t.reply.append(first - end_of_speech)

    old_done: dict[str, Any] | None = None
    for _ in range(args.barge_after - 1):
        event, _ = await c.until(lambda e: _is("response.output_text.delta", response_id=rid)(e)
                                 or (e["type"] == "response.done" and e["response"]["id"] == rid))
        if event["type"] == "response.done":
            old_done = event
            break
    barge_sent = await c.send("duo.input.slice", text=barge, final=True)
    answer_id: str | None = None
    judged = False
    while True:
        event, now = await c.until(lambda e: e["type"] in ("duo.input.state", "response.done", "response.created",
                                                           "response.output_text.delta"))
        kind = event["type"]
        if kind == "duo.input.state" and event["slice_text"] == barge:
            judged = True
            if event["state"] != "process" or event["input_text"] != barge:
                raise Misjudged(f"barge-in: {event['state']} {event['input_text']!r}")
        elif kind == "response.done" and event["response"]["id"] == rid and old_done is None:
            old_done = event
            if event["response"]["status"] == "cancelled":
                reason = (event["response"].get("status_details") or {}).get("reason")
                if reason != "turn_detected":
                    raise ServerError(f"reply cancelled for {reason!r}, not by the barge-in")
                t.barge.append(now - barge_sent)
        elif kind == "response.created" and event["response"]["id"] != rid and judged:
            answer_id = event["response"]["id"]
        elif kind == "response.output_text.delta" and answer_id is not None and event["response_id"] == answer_id:
            t.answer.append(now - barge_sent)
            break
    assert old_done is not None  # a new response starts only after the old one is done
    if old_done["response"]["status"] != "cancelled":  # the reply ended before the barge-in was judged
        t.barge_missed += 1
        text = old_done["response"]["output"][0]["content"][0]["text"]
        t.barge_missed_kinds[f"{old_done['response']['status']}: {question[-1]!r} -> {text[:40]!r}"] += 1
    await c.send("response.cancel")
    await c.until(lambda e: e["type"] == "response.done" and e["response"]["id"] == answer_id)


async def client(url: str, index: int, delay: float, args: argparse.Namespace, tally: Tally) -> None:
    """Staggered start, then warm-up rounds (not counted) and measured rounds; reconnect after a bad one."""
    await asyncio.sleep(delay)
    conn: Conn | None = None
    for r in range(args.warmup_rounds + args.rounds):
        t = tally if r >= args.warmup_rounds else Tally()
        k = index + r
        t.rounds += 1
        ok = False
        try:
            if conn is None:
                conn = await asyncio.wait_for(Conn.open(url, args.max_tokens), args.timeout)
            await asyncio.wait_for(one_round(conn, QUESTIONS[k % len(QUESTIONS)], BARGE_INS[k % len(BARGE_INS)],
                                             args, t), args.timeout)
            ok = True
        except Misjudged as exc:
            t.misjudged += 1
            t.misjudged_kinds[str(exc)] += 1
        except Exception as exc:  # timeouts, server errors, closed connections: counted, the client goes on
            t.errors += 1
            t.error_kinds[f"{type(exc).__name__}: {exc}"[:80]] += 1
        if not ok and conn is not None:
            with contextlib.suppress(Exception):  # the connection is dropped either way
                await asyncio.wait_for(conn.close(), 5)
            conn = None
        await asyncio.sleep(args.think)
    if conn is not None:
        await conn.close()


async def measure(url: str, sessions: int, args: argparse.Namespace) -> tuple[Tally, float]:
    tally = Tally()
    start = time.perf_counter()
    await asyncio.gather(*(client(url, i, i * args.spread / sessions, args, tally) for i in range(sessions)))
    return tally, time.perf_counter() - start


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`duo serve`'s settings for the bench's clients: text only, room for every client's reconnects."""
    return {"model": args.model, "device": args.device, "dtype": args.dtype, "tts": "none",
            "max_sessions": 2 * max(args.sessions) + 4, "idle_timeout_s": 3600, "outbound_queue": 1 << 16}


def counters(http: str) -> dict[str, float]:
    """Engine tick totals from the server's /metrics."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return {name: float(value) for name, _, value in (line.partition(" ") for line in lines) if name in COUNTERS}


def device_name(device: Any, dtype: str) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {dtype}"
    return f"cpu, {torch.get_num_threads()} threads, {dtype}"


@contextlib.contextmanager
def serve(args: argparse.Namespace) -> Iterator[tuple[str, str, str]]:
    """The server, in this process or its own, until the block ends: (WebSocket URL, HTTP base, device)."""
    if args.own_process:
        import torch

        with own_process_server(**server_settings(args)) as child:
            loaded = torch.device(child.info["device"]), child.info["dtype"]  # as the child resolved `auto`
            yield child.url, child.http, device_name(*loaded) + ", server in its own process"
        return
    from duo.server.settings import Settings

    server = InProcessServer(Settings(host="127.0.0.1", port=0, **server_settings(args))).start()
    try:
        backbone = server.state.backbone
        dtype = str(next(backbone.model.parameters()).dtype).removeprefix("torch.")
        yield server.url, server.http, device_name(backbone.device, dtype)
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto")
    parser.add_argument("--model", default=None, help="checkpoint or embedded name (default: the embedded default)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per client")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds per client run first, not counted")
    parser.add_argument("--slice-gap", type=float, default=2.0, help="seconds between the slices of a question")
    parser.add_argument("--barge-after", type=int, default=3, help="reply deltas before the barge-in")
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a client's rounds")
    parser.add_argument("--spread", type=float, default=2.0, help="client starts spread over this many seconds")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_output_tokens of every session")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a round may take before it is an error")
    parser.add_argument("--own-process", action="store_true",
                        help="run the server as a `duo serve` child, not in this process beside the clients")
    parser.add_argument("--json-out", help="also write the JSON lines to this file")
    args = parser.parse_args(argv)
    if min(args.sessions) < 1 or args.rounds < 1 or args.barge_after < 1:
        parser.error("--sessions, --rounds and --barge-after must be at least 1")

    load = time.perf_counter()
    rows = []
    with serve(args) as (url, http, device):
        print(f"# server ready on {url} in {time.perf_counter() - load:.1f} s: {device}", flush=True)
        for n in args.sessions:
            before = counters(http)
            tally, wall = asyncio.run(measure(url, n, args))
            d = {k: v - before.get(k, 0.0) for k, v in counters(http).items()}
            ticks = d.get("duo_ticks_total", 0.0)
            row = {"bench": "e2e", "sessions": n, "device": device, "rounds_per_client": args.rounds,
                   "warmup_rounds": args.warmup_rounds, "slice_gap_s": args.slice_gap, "wall_s": round(wall, 1),
                   **tally.summary(), "ticks": int(ticks),
                   "tick_ms_mean": round(1000 * d["duo_tick_seconds_sum"] / ticks, 1) if ticks else None,
                   "sessions_per_tick_mean": round(d["duo_batch_sessions_sum"] / ticks, 2) if ticks else None,
                   "graph_captures": int(d.get("duo_graph_captures_total", 0.0)),  # after ready: want 0
                   "eager_passes": int(d.get("duo_eager_forward_passes_total", 0.0))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    print(f"\n{'sessions':>8} {'rounds':>6} {'misjudged':>9} {'errors':>6} {'barge missed':>12} "
          f"{'reply p50/p95 ms':>17} {'barge-in p50/p95 ms':>20} {'answer p50/p95 ms':>18} {'tick mean ms':>12}")
    for r in rows:
        print(f"{r['sessions']:>8} {r['rounds']:>6} {r['misjudged']:>9} {r['errors']:>6} {r['barge_missed']:>12} "
              f"{cell(r['reply_ms_p50']) + ' / ' + cell(r['reply_ms_p95']):>17} "
              f"{cell(r['barge_ms_p50']) + ' / ' + cell(r['barge_ms_p95']):>20} "
              f"{cell(r['answer_ms_p50']) + ' / ' + cell(r['answer_ms_p95']):>18} {cell(r['tick_ms_mean']):>12}")
    print(f"({device}; reply = final slice sent -> first reply token; barge-in = interrupting slice sent -> "
          f"response.done cancelled; answer = same slice -> first token of its answer)")


if __name__ == "__main__":
    main()

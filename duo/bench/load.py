"""Load: many sessions at once, typing and speaking, on the CPU: every session is served or told why.

The real server (the embedded model; uvicorn on a free loopback port) runs in this process with its
default limits; N clients connect, started evenly over `--ramp` seconds. A share of them (`--audio`)
speak: a question synthesized by espeak-ng, streamed as 24 kHz PCM16 in 100 ms chunks at real-time pace,
then a second of silence; the others type it (`conversation.item.create`). Each runs `--turns` turns: the
question, then its reply to `response.done`. Every input is answered (`process_threshold` 0: this measures
serving, not judgement). Each session ends as one of

- served: every turn answered (it may also have been told something on the way, e.g. `overloaded`);
- refused: an `error` then a close at connect (`session_limit`, `overloaded`, ...);
- told: not served in time, but with an `error` that says why;
- silent: closed, or still waiting after `--timeout`, with no `error` at all. That must never happen: the
  bench exits 1 if any session is silent.

Reply latency: typed, the item sent -> the first reply delta; spoken, the last chunk of speech sent (before
the silence) -> the first reply delta. Tick figures come from the server's `duo_tick_seconds`.

    python -m duo.bench.load [--sessions 50] [--audio 0.5] [--turns 2] [--ramp 20] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duo.bench.e2e import percentile
from duo.server.inprocess import InProcessServer

QUESTIONS = ("what is the capital of france", "how many legs does a spider have",
             "what colour is the sky on a clear day", "name a fruit that is yellow")
CHUNK = 2400  # samples of 24 kHz audio: 100 ms


@dataclass
class Session:
    """What one client saw."""

    kind: str
    outcome: str = "silent"
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    close: str | None = None
    latencies: list[float] = field(default_factory=list)


def speech(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng, 24 kHz PCM16."""
    from duo.audio.decode import resample
    from duo.audio.tts import load_voice

    samples, rate = load_voice("espeak-ng").synthesize(text)
    pcm = resample(samples.astype(np.float32), rate, 24_000)
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2")


class Client:
    def __init__(self, ws: Any, record: Session) -> None:
        self.ws, self.record = ws, record
        self.first_delta: asyncio.Future[float] | None = None
        self.done: asyncio.Event = asyncio.Event()

    async def listen(self) -> None:
        """Every server event: errors are noted, a reply's first delta and its end are signalled."""
        async for raw in self.ws:
            event = json.loads(raw)
            kind = event["type"]
            if kind == "error":
                self.record.errors.append(event["error"]["code"])
            elif kind == "response.output_text.delta" and self.first_delta is not None \
                    and not self.first_delta.done():
                self.first_delta.set_result(time.perf_counter())
            elif kind == "response.done":
                self.done.set()

    async def send(self, kind: str, **body: Any) -> float:
        sent = time.perf_counter()
        await self.ws.send(json.dumps({"type": kind, **body}))
        return sent

    async def turn(self, question: str, pcm: np.ndarray | None) -> None:
        self.first_delta, self.done = asyncio.get_running_loop().create_future(), asyncio.Event()
        if pcm is None:
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}
            sent = await self.send("conversation.item.create", item=item)
        else:
            start, sent = time.perf_counter(), 0.0
            tail = np.zeros(24_000, dtype="<i2")
            for i, at in enumerate(range(0, len(pcm) + len(tail), CHUNK)):
                chunk = np.concatenate([pcm, tail])[at : at + CHUNK]
                t = await self.send("input_audio_buffer.append", audio=base64.b64encode(chunk.tobytes()).decode())
                if at < len(pcm):
                    sent = t  # the last chunk that holds speech
                await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK / 24_000 - time.perf_counter()))
        first = await self.first_delta
        self.record.latencies.append(first - sent)
        await self.done.wait()
        self.record.turns += 1


async def session(url: str, index: int, args: argparse.Namespace, audio: dict[str, np.ndarray]) -> Session:
    import websockets

    speaks = int((index + 1) * args.audio) > int(index * args.audio)  # the speakers spread among the typists
    record = Session("audio" if speaks else "text")
    await asyncio.sleep(args.ramp * index / max(1, args.sessions))
    try:
        ws = await websockets.connect(url, max_size=1 << 24, open_timeout=args.timeout)
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        record.close = f"connect: {type(exc).__name__}"
        return record
    client = Client(ws, record)
    listener = asyncio.create_task(client.listen())
    try:
        td = {"type": "duo", "process_threshold": 0.0, "forecast_tokens": 1}
        await client.send("session.update", session={"max_output_tokens": args.max_tokens,
                                                      "audio": {"input": {"turn_detection": td}}})
        for turn in range(args.turns):
            question = QUESTIONS[(index + turn) % len(QUESTIONS)]
            work = asyncio.create_task(client.turn(question, audio[question] if record.kind == "audio" else None))
            await asyncio.wait({listener, work}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() or work.exception() is not None:  # closed by the server, or too slow
                work.cancel()
                break
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.close()
        await asyncio.gather(listener, return_exceptions=True)
    if ws.close_code not in (None, 1000):
        record.close = f"{ws.close_code} {ws.close_reason}".strip()
    if record.turns == args.turns:
        record.outcome = "served"
    elif record.turns == 0 and record.errors and (record.close or "").startswith("1013"):
        record.outcome = "refused"
    else:
        record.outcome = "told" if record.errors else "silent"
    return record


def tick_quantiles(metrics: str) -> dict[str, float | None]:
    """p50 / p95 / p99 of `duo_tick_seconds` from its cumulative buckets (the bucket's upper bound)."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith("duo_tick_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0

    def q(p: float) -> float | None:
        return next((le for le, n in buckets if n >= p * total), None) if total else None

    return {"tick_s_p50_le": q(0.5), "tick_s_p95_le": q(0.95), "tick_s_p99_le": q(0.99)}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return r.read().decode()


def counters(metrics: str, prefix: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith(prefix + "{"):
            label = line.split('"', 2)[1]
            found[label] = float(line.rsplit(" ", 1)[1])
    return found


async def run(url: str, args: argparse.Namespace, audio: dict[str, np.ndarray]) -> list[Session]:
    return await asyncio.gather(*(session(url, i, args, audio) for i in range(args.sessions)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--audio", type=float, default=0.5, help="share of the sessions that speak")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=20.0, help="client starts spread over this many seconds")
    parser.add_argument("--max-tokens", type=int, default=24, help="max_output_tokens of every session")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a turn may take before it counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-sessions", type=int, default=64, help="the server's --max-sessions")
    parser.add_argument("--json-out", help="also write the JSON result here")
    args = parser.parse_args(argv)

    from duo.server.settings import Settings

    audio = {q: speech(q) for q in QUESTIONS} if args.audio > 0 else {}
    server = InProcessServer(Settings(device=args.device, tts="none", max_sessions=args.max_sessions))
    server.start()
    try:
        began = time.perf_counter()
        records = asyncio.run(run(server.url, args, audio))
        wall = time.perf_counter() - began
        metrics = scrape(server.port)
    finally:
        server.stop()

    def ms(values: list[float], q: float) -> float | None:
        v = percentile(values, q)
        return None if v is None else round(1000 * v)

    result: dict[str, Any] = {"bench": "load", "sessions": args.sessions, "audio_share": args.audio,
                              "turns": args.turns, "ramp_s": args.ramp, "max_tokens": args.max_tokens,
                              "wall_s": round(wall, 1)}
    for kind in ("text", "audio"):
        mine = [r for r in records if r.kind == kind]
        lat = [x for r in mine for x in r.latencies]
        result[kind] = {"sessions": len(mine), **dict(Counter(r.outcome for r in mine)),
                        "reply_ms_p50": ms(lat, 50), "reply_ms_p95": ms(lat, 95),
                        "errors": dict(Counter(e for r in mine for e in r.errors)),
                        "closes": dict(Counter(r.close for r in mine if r.close))}
    result.update(tick_quantiles(metrics))
    result["refused"] = counters(metrics, "duo_sessions_refused_total")
    result["dropped"] = counters(metrics, "duo_connections_dropped_total")
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    silent = sum(r.outcome == "silent" for r in records)
    if silent:
        print(f"{silent} session(s) ended with no reason given", flush=True)
    return 1 if silent else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The whole evaluation: render the scenarios, start a server unless given one, play every scenario under every
turn-detection mode, judge the runs, and assemble one report (plus the timeline plots)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import counters, metrics, summary
from .client import WIRE_RATE, PlayOptions, ScenarioRun, to_wire
from .render import AudioCache, AudioPart, Part, RenderError
from .scenario import Scenario, load_scenarios, shipped_scenarios

log = logging.getLogger(__name__)
MODES = ("duo", "server_vad")
ERROR = "error: "  # how an outcome says its run broke off (a refused session, a dropped connection)


@dataclass
class EvalConfig:
    scenarios: str | None = None
    url: str | None = None
    modes: tuple[str, ...] = MODES
    play: PlayOptions = field(default_factory=PlayOptions)
    concurrency: int = 1
    cache_dir: Path | None = None
    only: tuple[str, ...] = ()
    # the evaluation's own server (no URL given), in this process or in one of its own
    own_process: bool = False
    model: str | None = None
    adapter: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    asr_model: str = "tiny.en"
    tts: str = "auto"
    within_s: float | None = None  # overrides each scenario's own


def select(scenarios: list[Scenario], only: tuple[str, ...]) -> list[Scenario]:
    """Scenarios whose id, expectation or tag is in `only` (all when empty)."""
    if not only:
        return scenarios
    chosen = [s for s in scenarios if s.id in only or s.expect in only or set(s.tags) & set(only)]
    if not chosen:
        raise ValueError(f"no scenario matches {', '.join(only)}")
    return chosen


def render_all(scenarios: list[Scenario], cache: AudioCache,
               progress: Callable[[str], None]) -> tuple[dict[str, list[Part]], list[dict[str, str]]]:
    rendered, skipped = {}, []
    for s in scenarios:
        try:
            rendered[s.id] = cache.parts(s)
        except RenderError as exc:
            skipped.append({"id": s.id, "reason": str(exc)})
            progress(f"skip {s.id}: {exc}")
    return rendered, skipped


async def warm_up(url: str, parts: list[Part], options: PlayOptions) -> None:
    """One throwaway exchange so the first scenario does not pay for loading speech recognition and output."""
    from websockets.asyncio.client import connect

    audio = next(p for p in parts if isinstance(p, AudioPart))
    async with connect(url, max_size=1 << 24, additional_headers=list(options.headers)) as ws:
        session = {"output_modalities": ["audio" if options.audio_out else "text"], "max_output_tokens": 8,
                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": WIRE_RATE}, "turn_detection": None}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        pcm = to_wire(audio.samples)
        step = WIRE_RATE // 2 * 2
        for i in range(0, len(pcm), step):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm[i : i + step]).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await _until(ws, "conversation.item.input_audio_transcription.completed")
        await ws.send(json.dumps({"type": "response.create"}))
        await _until(ws, "response.done")


async def _until(ws: Any, kind: str, timeout: float = 600) -> None:
    async def wait() -> None:
        async for message in ws:
            event = json.loads(message)
            if event.get("type") == kind:
                return
            if event.get("type") == "error":
                raise RuntimeError(f"warm-up failed: {event.get('error')}")

    await asyncio.wait_for(wait(), timeout)


async def play_all(url: str, scenarios: list[Scenario], rendered: dict[str, list[Part]], modes: tuple[str, ...],
                   options: PlayOptions, concurrency: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    from websockets.exceptions import WebSocketException

    jobs = [(s, m) for s in scenarios if s.id in rendered for m in modes]
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(scenario: Scenario, mode: str) -> dict[str, Any]:
        nonlocal done
        async with gate:
            run = ScenarioRun(scenario, mode, options)
            alone = concurrency <= 1  # the server's counters between its start and end are this run's
            before = await counters.read(url) if alone else None
            try:
                record = await run.play(url, rendered[scenario.id])
                if alone:
                    record["server_counters"] = counters.delta(before, await counters.read(url))
                outcome = metrics.evaluate(record)
            except (OSError, TimeoutError, RuntimeError, WebSocketException) as exc:  # that run only
                record, outcome = run.record, {"passed": None, "reason": f"{ERROR}{type(exc).__name__}: {exc}"}
            record["outcome"] = {"expect": scenario.expect, **outcome}
            done += 1
            verdict = {True: "pass", False: "FAIL", None: "n/a "}[outcome["passed"]]
            lat = f" latency {outcome['latency_token_s']:.2f} s" if "latency_token_s" in outcome else ""
            progress(f"[{done}/{len(jobs)}] {mode:<10} {verdict} {scenario.id}: {outcome['reason']}{lat}")
            return record

    return list(await asyncio.gather(*(one(s, m) for s, m in jobs)))


def run_evaluation(cfg: EvalConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Play the scenarios and return the report (see `docs/evaluation.md`)."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.time()
    load_before = _load()
    path = Path(cfg.scenarios) if cfg.scenarios else shipped_scenarios()
    scenarios = select(load_scenarios(path), cfg.only)
    if cfg.within_s is not None:
        scenarios = [s.model_copy(update={"within_s": cfg.within_s}) for s in scenarios]
    rendered, skipped = render_all(scenarios, AudioCache(cfg.cache_dir), say)
    if not rendered:
        raise RenderError("no scenario could be rendered here")
    warm_parts = rendered[next(s.id for s in scenarios if s.id in rendered and s.expect == "respond")] \
        if any(s.expect == "respond" and s.id in rendered for s in scenarios) else next(iter(rendered.values()))
    options = cfg.play

    counted: dict[str, Any] = {}

    async def go(url: str) -> list[dict[str, Any]]:
        say(f"warming up {url}")
        await warm_up(url, warm_parts, options)
        before = await counters.read(url)
        runs = await play_all(url, scenarios, rendered, cfg.modes, options, cfg.concurrency, say)
        counted["all"] = counters.delta(before, await counters.read(url))
        return runs

    if cfg.url:
        server_info: dict[str, Any] = {"url": cfg.url, "in_process": False}
        runs = asyncio.run(go(cfg.url))
    else:
        from duo.server.own_process import own_process_server

        from .server import in_process_server, resolve_tts

        tts = resolve_tts(cfg.tts)
        if tts == "none" and options.audio_out:
            say("no speech output available (Piper or espeak-ng): replies are text, no audio latency")
            options = replace(options, audio_out=False)
        longest = max(sum(p.seconds for p in parts if isinstance(p, AudioPart)) for parts in rendered.values())
        burst = max(10.0, (longest + 60 + options.max_tail_s) * options.speed)
        say("starting the server (model load and warm-up)")
        serve = own_process_server if cfg.own_process else in_process_server
        # Twice the scenarios at once: a session whose client has gone may still be finishing (its last
        # recognition, its engine release) when the next scenario connects, and a refusal is not what is measured.
        with serve(model=cfg.model, adapter=cfg.adapter, device=cfg.device, dtype=cfg.dtype, asr_model=cfg.asr_model,
                   tts=tts, audio_burst_s=burst, max_sessions=2 * cfg.concurrency + 2) as running:
            runs = asyncio.run(go(running.url))
            server_info = running.describe()
    by_mode = {m: [r["outcome"] for r in runs if r["mode"] == m] for m in cfg.modes}
    return {
        "report": "duo duplex evaluation",
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "scenarios_file": str(path),
        "scenarios_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch": _torch_version(), "load_average_start": load_before, "load_average_end": _load()},
        "server": server_info,
        "settings": {"modes": list(cfg.modes), "speed": options.speed, "chunk_ms": options.chunk_ms,
                     "concurrency": cfg.concurrency, "output": "audio" if options.audio_out else "text",
                     "max_tail_s": options.max_tail_s, "duo_params": dict(options.duo_params)},
        "summary": {m: summary.summarize(outcomes) for m, outcomes in by_mode.items()},
        "server_counters": counters.total([counted["all"]]) if counted.get("all") is not None else None,
        "skipped": skipped,
        "runs": runs,
    }


def rejudge(report: dict[str, Any]) -> dict[str, Any]:
    """Judge a saved report's recorded runs again (after a change to the metrics) and redo its summary."""
    for run in report["runs"]:
        if not str(run.get("outcome", {}).get("reason", "")).startswith(ERROR):  # an errored run has nothing to judge
            run["outcome"] = {"expect": run["expect"], **metrics.evaluate(run)}
    modes = list(dict.fromkeys(run["mode"] for run in report["runs"]))
    report["summary"] = {m: summary.summarize([r["outcome"] for r in report["runs"] if r["mode"] == m])
                         for m in modes}
    return report


def _torch_version() -> str | None:
    try:
        import torch

        return torch.__version__
    except ImportError:
        return None


def _load() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine shows in CPU latencies."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

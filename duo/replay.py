"""`duo replay SCRIPT.json`: a timeline of text slices through the engine on a virtual clock.

A script is a list of slices `{"t": seconds, "text": "...", "final": bool?}` (or `{"slices": [...]}`).
A slice is `final` (the speaker paused after it) unless the next one follows within the slice length,
which means speech went on; `"final"` overrides that. Each engine tick advances the virtual clock by
`--tick-ms`, so the timeline is the same on any machine; `--json` prints one JSON object per event.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from duo.files import package_data
from duo.options import add_model_args, add_session_args, load_from_args, session_config_from_args

SLICE_SECONDS = 2.0
_TYPES = {
    "StateDecided": "state", "ResponseStarted": "response.started", "TextDelta": "text.delta",
    "ResponseDone": "response.done", "ContextTrimmed": "context.trimmed", "Error": "error",
    "SessionClosed": "session.closed",
}


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class Slice:
    t: float
    text: str
    final: bool


def sample_script() -> Path:
    return package_data("duo", "assets", "replay", "sample.json")


def parse_script(data: Any) -> list[Slice]:
    items = data.get("slices") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ScriptError("a script is a non-empty list of slices (or an object with a 'slices' list)")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("t"), int | float) or item["t"] < 0:
            raise ScriptError(f"slice {i}: needs a non-negative number 't'")
        if not isinstance(item.get("text"), str):
            raise ScriptError(f"slice {i}: needs a string 'text'")
        if "final" in item and not isinstance(item["final"], bool):
            raise ScriptError(f"slice {i}: 'final' must be true or false")
    items = sorted(items, key=lambda x: x["t"])
    slices = []
    for i, item in enumerate(items):
        follows = i + 1 < len(items) and items[i + 1]["t"] - item["t"] <= SLICE_SECONDS + 1e-6
        slices.append(Slice(float(item["t"]), item["text"], bool(item.get("final", not follows))))
    return slices


def event_record(t: float, event: Any) -> dict[str, Any]:
    body = {k: v for k, v in asdict(event).items() if k != "session_id"}
    if "probs" in body:
        body["probs"] = {str(k): round(v, 4) for k, v in body["probs"].items()}
    for key in ("state", "status"):
        if key in body:
            body[key] = str(body[key])
    return {"t": round(t, 3), "type": _TYPES.get(type(event).__name__, type(event).__name__), **body}


def replay(engine: Any, slices: list[Slice], config: Any, tick_s: float, max_s: float = 600.0) -> list[dict]:
    """Run `slices` through one session of `engine`; return the timeline of records."""
    session = engine.open_session(config)
    records: list[dict] = []
    pending, now = list(slices), 0.0
    while (pending or engine.has_work()) and now <= max_s:
        while pending and pending[0].t <= now + 1e-9:
            s = pending.pop(0)
            records.append({"t": round(s.t, 3), "type": "user.slice", "text": s.text, "final": s.final})
            session.push_slice(s.text, s.final)
        if engine.has_work():
            records += [event_record(now, e) for e in engine.step()]
            now += tick_s
        elif pending:
            now = pending[0].t
    engine.close_session(session.id)
    engine.step()
    return records


def format_record(r: dict) -> str | None:
    t = f"{r['t']:7.2f}s"
    match r["type"]:
        case "user.slice":
            return f"{t}  user      {r['text']!r}" + ("" if r["final"] else "  …")
        case "state":
            probs = "  ".join(f"{k}={v:.2f}" for k, v in r["probs"].items())
            held = "  (waiting for the pause)" if r["held"] else ""
            return f"{t}  {r['state']:<11}{probs}{held}"
        case "response.started":
            return f"{t}  reply ▶   {r['response_id']}"
        case "response.done":
            return f"{t}  reply ■   [{r['status']}] {r['text']!r}"
        case "context.trimmed":
            return f"{t}  context   dropped {r['dropped_turns']} oldest turn(s)"
        case "error":
            return f"{t}  error     {r['code']}: {r['message']}"
    return None


def run(args: argparse.Namespace) -> int:
    from duo.engine.config import EngineConfig, Mode
    from duo.engine.llm_engine import Engine

    path = Path(args.script) if args.script else sample_script()
    try:
        slices = parse_script(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        print(f"duo replay: {path}: {exc}", file=sys.stderr)
        return 2
    config = session_config_from_args(args)
    engine = Engine(load_from_args(args), EngineConfig(mode=Mode(args.mode)))
    if not args.json:
        print(f"# {path.name} on {engine.backbone.name}, {engine.backbone.device}, tick {args.tick_ms} ms")
    records = replay(engine, slices, config, args.tick_ms / 1000)
    for r in records:
        line = json.dumps(r) if args.json else format_record(r)
        if line:
            print(line)
    if not args.json:
        print(f"# {engine.ticks} ticks, {engine.forward_passes} forward passes")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run a timeline of text slices through the engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", nargs="?", help="script JSON (default: the shipped sample)")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--tick-ms", type=float, default=50.0, help="virtual time per engine tick (default 50)")
    p.add_argument("--mode", choices=["duo", "tdm"], default="duo", help="tdm: the time-division baseline")
    add_model_args(p)
    add_session_args(p)
    p.set_defaults(func=run)

"""`duo evaluate-duplex [SCENARIOS.jsonl]` (also `python -m duo.evaluation`): duplex behaviour through the live
server, duo's turn detection side by side with the pause-based baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenarios", nargs="?", default=None,
                   help="JSON-lines scenario file (default: the shipped set, built by "
                        "python -m duo.evaluation.build_scenarios)")
    p.add_argument("--url", default=None,
                   help="ws://HOST:PORT/v1/realtime of a running server (default: start one in this process)")
    p.add_argument("--api-key", default=None, help="bearer token for --url")
    p.add_argument("--turn-detection", nargs="+", choices=["duo", "server_vad"], default=["duo", "server_vad"],
                   help="modes to run, each scenario under each (default: both)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="audio sent this many times faster than real time (default 1: real time)")
    p.add_argument("--chunk-ms", type=int, default=40, help="audio per input_audio_buffer.append (default 40)")
    p.add_argument("--concurrency", type=int, default=1, help="scenarios played at once, one session each")
    p.add_argument("--duo-param", nargs="+", default=(), metavar="KEY=VALUE",
                   help="set in DUO's turn_detection, e.g. confirm_ms=300 early_pause_ms=null (JSON values)")
    p.add_argument("--within", type=float, default=None,
                   help="seconds a reply may take after the end of a query (overrides each scenario's within_s)")
    p.add_argument("--only", nargs="+", default=(), metavar="ID|EXPECTATION|TAG", help="run these scenarios only")
    p.add_argument("--output", choices=["audio", "text"], default="audio",
                   help="reply modality asked for (default audio: latency to the first reply audio is measured)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR", help="write a timeline PNG per scenario")
    p.add_argument("--audio-cache", type=Path, default=None, metavar="DIR",
                   help="rendered scenario audio (default: the user cache; 'none' to render in memory)")
    p.add_argument("--report", type=Path, default=None, metavar="FILE",
                   help="judge the runs of a saved JSON report again instead of running (for --json / --plots)")
    p.add_argument("--render-only", action="store_true",
                   help="render the scenarios' audio into --audio-cache and stop (to carry to another machine)")
    g = p.add_argument_group("the evaluation's own server (without --url)")
    g.add_argument("--own-process", action="store_true",
                   help="run it as `duo serve` in a process of its own, not in this one: the client's playback "
                        "then shares no interpreter with it (use for latency figures on a GPU host)")
    g.add_argument("--model", default=None, help="HF causal-LM id or path (default: the embedded SmolLM2-135M)")
    g.add_argument("--adapter", default="auto", help="peft adapter; 'auto' = the shipped one, 'none' = bare model")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    g.add_argument("--asr-model", default="tiny.en", help="speech recognition: tiny.en, base, or a Whisper id/path")
    g.add_argument("--tts", default="auto", help="speech output: auto, piper, espeak-ng, none")


def run(args: argparse.Namespace) -> int:
    from .render import AudioCache, RenderError, default_cache
    from .runner import rejudge, render_all, select
    from .scenario import ScenarioError, load_scenarios

    if args.speed <= 0 or args.speed > 10:
        raise SystemExit("evaluate-duplex: --speed must be within (0, 10]")
    if not 10 <= args.chunk_ms <= 1000 or args.concurrency < 1:
        raise SystemExit("evaluate-duplex: --chunk-ms must be within 10..1000 and --concurrency at least 1")
    cache = None if str(args.audio_cache) == "none" else (args.audio_cache or default_cache())
    try:
        if args.report:
            report = rejudge(json.loads(args.report.read_text()))
        elif args.render_only:
            scenarios = select(load_scenarios(args.scenarios), tuple(args.only))
            rendered, skipped = render_all(scenarios, AudioCache(cache), lambda s: print(s, file=sys.stderr))
            print(f"rendered {len(rendered)} scenarios into {cache}" + (f", {len(skipped)} skipped" if skipped
                                                                          else ""), file=sys.stderr)
            return 1 if skipped else 0
        else:
            report = _run(args, cache)
    except (ScenarioError, RenderError, ValueError, OSError, KeyError) as exc:
        raise SystemExit(f"evaluate-duplex: {exc}") from None
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        print(format_summary(report), flush=True)
    if args.plots:  # after the report, which a missing plotting library must not cost
        try:
            from .plot import plot_report

            paths = plot_report(report, args.plots)
        except ImportError as exc:
            raise SystemExit(f"evaluate-duplex: no plots ({exc}); plot the saved report with --report") from None
        print(f"{len(paths)} timeline plots in {args.plots}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, cache: Path | None) -> dict[str, Any]:
    from .client import PlayOptions
    from .runner import EvalConfig, run_evaluation

    headers = (("Authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    cfg = EvalConfig(scenarios=args.scenarios, url=args.url, modes=tuple(dict.fromkeys(args.turn_detection)),
                     play=PlayOptions(speed=args.speed, chunk_ms=args.chunk_ms, audio_out=args.output == "audio",
                                      headers=headers, duo_params=_duo_params(args.duo_param)),
                     concurrency=args.concurrency, cache_dir=cache, only=tuple(args.only),
                     own_process=args.own_process, model=args.model,
                     adapter=args.adapter, device=args.device, dtype=args.dtype, asr_model=args.asr_model,
                     tts=args.tts, within_s=args.within)
    return run_evaluation(cfg)


def _duo_params(pairs: list[str]) -> tuple[tuple[str, Any], ...]:
    """`KEY=VALUE` pairs, each value read as JSON (`300`, `null`, `true`)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"evaluate-duplex: --duo-param takes KEY=VALUE, got {pair!r}")
        try:
            out.append((key, json.loads(value)))
        except json.JSONDecodeError:
            raise SystemExit(f"evaluate-duplex: --duo-param {key}: {value!r} is not a JSON value") from None
    return tuple(out)


def _fmt_rate(r: dict[str, Any]) -> str:
    return "—" if r.get("rate") is None else f"{100 * r['rate']:.0f} % ({r['n']})"


def _fmt_lat(s: dict[str, Any] | None) -> str:
    return "—" if not s or not s.get("n") else f"{s['p50']:.2f} / {s['p90']:.2f} s ({s['n']})"


def _fmt_resumed(c: dict[str, Any] | None) -> str:
    if not c:
        return "—"
    rate = c.get("early_close_resumed_rate")
    return f"{c['early_closes_resumed']} / {c['early_closes']}" + (f" ({100 * rate:.0f} %)" if rate is not None
                                                                    else "")


def _fmt_withdrawn(c: dict[str, Any] | None) -> str:
    return "—" if not c else f"{c['withdrawn_replies']} ({c['discarded_tokens']} tokens)"


def format_summary(report: dict[str, Any]) -> str:
    """The side-by-side table of the modes, for people."""
    modes = list(report["summary"])
    rows = [
        ("passed", lambda s: f"{s['passed']} / {s['measured']}"),
        ("takeover, background speech ↓", lambda s: _fmt_rate(s["takeover_background"])),
        ("takeover, pauses ↓", lambda s: _fmt_rate(s["takeover_pause"])),
        ("answered queries ↑", lambda s: _fmt_rate(s["response_rate"])),
        ("interruptions obeyed ↑", lambda s: _fmt_rate(s["interrupt_success"])),
        ("false interruptions ↓", lambda s: _fmt_rate(s["false_interruption"])),
        ("end of query → first token p50/p90", lambda s: _fmt_lat(s["latency_token_s"])),
        ("end of query → first audio p50/p90", lambda s: _fmt_lat(s["latency_audio_s"])),
        ("barge-in → reply stopped p50/p90", lambda s: _fmt_lat(s["barge_in_s"])),
        ("interruption's end → silenced p50/p90", lambda s: _fmt_lat(s.get("silenced_s"))),
        ("interruption's end → answer audio p50/p90", lambda s: _fmt_lat(s.get("interrupt_answer_audio_s"))),
        ("speech over a reply → duck p50/p90", lambda s: _fmt_lat(s.get("duck_s"))),
        ("early closes resumed", lambda s: _fmt_resumed(s.get("server_counters"))),
        ("withdrawn replies (tokens)", lambda s: _fmt_withdrawn(s.get("server_counters"))),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = ["".ljust(width) + "".join(m.ljust(22) for m in modes)]
    for name, cell in rows:
        lines.append(name.ljust(width) + "".join(cell(report["summary"][m]).ljust(22) for m in modes))
    srv = report["server"]
    lines.append(f"\nserver: {srv.get('model', srv['url'])} on {srv.get('gpu') or srv.get('device', '?')}; "
                 f"speed {report['settings']['speed']}, {report['duration_s']:.0f} s")
    if all_runs := report.get("server_counters"):
        lines.append(f"server counters over every run: early closes resumed {_fmt_resumed(all_runs)}, "
                     f"withdrawn replies {_fmt_withdrawn(all_runs)}")
    for run in report["runs"]:
        o = run["outcome"]
        if o["passed"] is not True:
            verdict = "FAIL" if o["passed"] is False else "n/a "
            lines.append(f"  {verdict} {run['mode']:<10} {run['id']}: {o['reason']}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-duplex", help="duplex behaviour (answer, ignore, wait, barge-in) through the server",
                       description=__doc__)
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(prog="python -m duo.evaluation", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(args)


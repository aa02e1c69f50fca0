"""A short real evaluation: two scenarios, both turn-detection modes, through a live server on this machine."""

from __future__ import annotations

import json
import urllib.request

import pytest

from duo.evaluation.cli import format_summary
from duo.evaluation.client import PlayOptions
from duo.evaluation.counters import COUNTERS
from duo.evaluation.plot import plot_report
from duo.evaluation.runner import EvalConfig, run_evaluation

SCENARIOS = [
    {"id": "ask", "expect": "respond", "max_output_tokens": 8, "within_s": 12,
     "timeline": [{"silence": 0.3}, {"say": "set a timer for ten minutes", "voice": "espeak-ng:en-us",
                                     "role": "query"}]},
    {"id": "room", "expect": "no_response", "within_s": 8,
     "timeline": [{"silence": 0.3}, {"play": "alsa:Front_Left.wav", "role": "background"}]},
]


@pytest.mark.slow
def test_scenarios_through_the_live_server(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SCENARIOS))
    lines: list[str] = []
    report = run_evaluation(EvalConfig(scenarios=str(path), concurrency=2, tts="espeak-ng", device="cpu",
                                       play=PlayOptions(chunk_ms=100)), progress=lines.append)
    assert report["server"]["in_process"] and report["server"]["adapter"] == "auto"
    assert report["settings"]["output"] == "audio" and len(lines) >= 4
    runs = {(r["id"], r["mode"]): r for r in report["runs"]}
    assert set(runs) == {(s["id"], m) for s in SCENARIOS for m in ("duo", "server_vad")}
    for run in runs.values():
        times = [e["t"] for e in run["events"]]
        assert times == sorted(times) and times[0] >= 0 and run["end"] >= max(times)
        assert any(e["type"] == "input_audio_buffer.speech_started" for e in run["events"])
        assert not [e for e in run["events"] if e["type"] == "error"]
    # the query is recognized and answered under both modes; DUO judged it, the baseline did not
    for mode in ("duo", "server_vad"):
        ask = runs[("ask", mode)]
        assert ask["outcome"]["passed"] is True, ask["outcome"]
        assert 0 < ask["outcome"]["latency_token_s"] <= ask["outcome"]["latency_audio_s"]
        assert any(e["type"] == "response.output_audio.delta" for e in ask["events"])
    assert any(e["type"] == "duo.input.state" for e in runs[("ask", "duo")]["events"])
    assert not any(e["type"] == "duo.input.state" for e in runs[("ask", "server_vad")]["events"])
    # the baseline answers any speech it recognizes: a takeover of the man naming the speaker channel
    room = runs[("room", "server_vad")]["outcome"]
    assert room["passed"] is False and room["takeover"] is True
    summary = report["summary"]["server_vad"]
    assert summary["takeover_background"] == {"n": 1, "rate": 1.0} and summary["latency_token_s"]["n"] == 1
    assert "takeover, background speech" in format_summary(report)
    # the server's counts of early closes and withdrawn replies: over every run (two at a time: not per run)
    counted = report["server_counters"]
    assert set(counted) == {*COUNTERS, "early_close_resumed_rate"} and all(counted[n] >= 0 for n in COUNTERS)
    assert report["summary"]["duo"]["server_counters"] is None and "server_counters" not in runs[("ask", "duo")]
    pngs = plot_report(report, tmp_path / "plots")
    assert sorted(p.name for p in pngs) == ["ask.png", "room.png"] and all(p.stat().st_size > 10_000 for p in pngs)


@pytest.mark.slow
def test_the_server_in_a_process_of_its_own(tmp_path) -> None:
    """`--own-process`: the same judgement from `duo serve` in a child process, which is gone afterwards."""
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(SCENARIOS[0]) + "\n")
    report = run_evaluation(EvalConfig(scenarios=str(path), modes=("duo",), tts="espeak-ng", device="cpu",
                                       own_process=True, play=PlayOptions(chunk_ms=100)))
    server = report["server"]
    assert server["own_process"] and not server["in_process"]
    assert server["model"] == "embedded:smollm2-135m-instruct+smollm2-135m-instruct"
    (run,) = report["runs"]
    assert run["outcome"]["passed"] is True, run["outcome"]
    assert any(e["type"] == "duo.input.state" for e in run["events"])
    assert report["server_counters"] is not None  # read over HTTP from the child's /metrics
    port = int(server["url"].split(":")[2].split("/")[0])
    with pytest.raises(OSError):  # the child has exited
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)

"""`duo replay`: scripts, the virtual clock and both output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duo.cli import main
from duo.replay import ScriptError, parse_script, sample_script


def test_script_parsing_infers_pauses() -> None:
    slices = parse_script([{"t": 2.0, "text": "of france"}, {"t": 0.0, "text": "what is the capital"},
                           {"t": 9.0, "text": "thanks", "final": False}])
    assert [(s.t, s.final) for s in slices] == [(0.0, False), (2.0, True), (9.0, False)]
    assert parse_script(json.loads(sample_script().read_text()))


@pytest.mark.parametrize("bad", [[], {"slices": 3}, [{"text": "x"}], [{"t": -1, "text": "x"}],
                                 [{"t": 0, "text": 5}], [{"t": 0, "text": "x", "final": "yes"}]])
def test_bad_scripts_are_refused(bad) -> None:
    with pytest.raises(ScriptError):
        parse_script(bad)


def test_replay_json_timeline(tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps([{"t": 0.0, "text": "what is the capital"}, {"t": 2.0, "text": "of france"}]))
    args = ["replay", str(script), "--json", "--model", str(tiny_model_path), "--adapter", "none",
            "--process-threshold", "0", "--forecast-tokens", "2", "--max-new-tokens", "5", "--tick-ms", "100"]
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    types = [r["type"] for r in records]
    assert types[:2] == ["user.slice", "state"] and "response.started" in types and types[-1] == "response.done"
    state = records[1]
    # judged at the end of a tick of the virtual clock: the first, or a later one when admission spreads the
    # instructions' prefill over ticks
    ticks = state["t"] / 0.1
    assert 1 <= ticks <= 5 and ticks == pytest.approx(round(ticks))
    assert set(state["probs"]) == {"process", "ignore", "incomplete"}
    assert state["held"]  # process on a slice cut mid-speech waits for the pause
    times = [r["t"] for r in records]
    assert times == sorted(times)


def test_replay_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["replay", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err

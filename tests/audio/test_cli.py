"""`duo transcribe FILE [--json]` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duo.cli import main
from tests.audio.conftest import package_dir


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", "--model", "tiny.en", str(package_dir("amfm_decompy") / "sample.wav")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "speech started" in lines[0] and "speech stopped" in lines[1]
    assert lines[2].split()[2:] == ["final", "How", "do", "we", "define", "it?"]


def test_json_output(capsys: pytest.CaptureFixture[str], alsa_dir: Path) -> None:
    assert main(["transcribe", "--json", "--model", "tiny.en", "--pause", "0.6", str(alsa_dir / "Front_Left.wav")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["type"] for r in rows] == ["SpeechStarted", "SpeechStopped", "TextSlice"]
    text = rows[2]
    assert text["final"] is True and text["text"].lower().strip(".") in {"front left", "front, left"}
    assert 0 <= text["start_s"] < rows[0]["time_s"] < rows[1]["time_s"] <= text["end_s"]


def test_bad_file_exits_2_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["transcribe", str(bad)]) == 2
    assert "cannot read x.wav" in capsys.readouterr().err
    assert main(["transcribe", "--slice", "9", str(bad)]) == 2

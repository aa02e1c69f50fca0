"""`python -m duo.evaluation.pause_partial` on one real utterance: the VAD's end of speech, and a final slice
that takes its pause partial's reading with the words its own decode would give."""

from __future__ import annotations

import pytest

from duo.audio.asr import Recognizer
from duo.audio.whisper_model import load_whisper
from duo.evaluation.pause_partial import hear
from duo.evaluation.render import AudioPart, render
from duo.evaluation.scenario import parse_scenario


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(load_whisper("tiny.en", "cpu"))


def test_a_query_ended_by_its_pause_is_final_with_its_partials_reading(recognizer: Recognizer) -> None:
    scenario = parse_scenario({"id": "q", "expect": "respond", "timeline": [
        {"silence": 0.5}, {"say": "what is the capital of france", "voice": "espeak-ng:en-us", "role": "query"}]})
    parts = [p for p in render(scenario) if isinstance(p, AudioPart)]
    rows = [row for part in parts for row in hear(part, recognizer)]
    assert len(rows) == 1
    row = rows[0]
    assert row["role"] == "query" and 0 <= row["vad_lag_ms"] <= 300
    assert row["reused"] and row["same_words"]
    assert "france" in row["text"].lower()

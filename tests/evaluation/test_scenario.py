"""Scenario files: the shipped set, and every malformed scenario refused with a message that says where."""

from __future__ import annotations

import json

import pytest

from duo.evaluation.scenario import EXPECTATIONS, ScenarioError, load_scenarios, parse_lines, shipped_scenarios


def line(**kw) -> str:
    base = {"id": "s1", "expect": "respond", "timeline": [{"say": "what time is it", "role": "query"}]}
    return json.dumps({**base, **kw})


def test_shipped_set_covers_every_expectation_and_source() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 40
    assert {s.expect for s in scenarios} == set(EXPECTATIONS)
    assert all(sum(s.expect == e for s in scenarios) >= 6 for e in EXPECTATIONS)
    needed = set().union(*(s.voices() for s in scenarios))
    assert {"espeak-ng", "flite", "piper", "pyannote", "amfm_decompy", "alsa"} <= needed
    assert any(item.over for s in scenarios for item in s.sounds())  # mixes under speech
    assert shipped_scenarios().stat().st_size < 64_000  # timelines only, no audio


def test_shipped_set_is_what_the_builder_makes() -> None:
    from duo.evaluation.build_scenarios import build
    from duo.evaluation.scenario import dump

    assert "".join(dump(s) + "\n" for s in build()) == shipped_scenarios().read_text()


def test_a_valid_file_parses_with_defaults_and_comments() -> None:
    wait = {"id": "w", "expect": "wait", "timeline": [
        {"say": "set a timer for", "voice": "flite:slt", "role": "query"}, {"silence": 1.5, "role": "pause"},
        {"say": "ten minutes", "voice": "piper:joe", "role": "query",
         "over": [{"play": "alsa:Noise.wav", "gain_db": -12}]}]}
    cut = {"id": "i", "expect": "interrupt", "timeline": [
        {"say": "tell me a story", "role": "query"}, {"wait_for": "reply", "delay": 1},
        {"play": "amfm_decompy:sample.wav", "role": "interrupt"}], "max_output_tokens": 64}
    scenarios = parse_lines(["# comment", "", line(), json.dumps(wait), json.dumps(cut)])
    assert [s.id for s in scenarios] == ["s1", "w", "i"]
    assert scenarios[0].within_s == 5.0 and scenarios[0].timeline[0].voice == "espeak-ng:en-us"
    assert scenarios[1].voices() == {"flite", "piper", "alsa"}
    assert scenarios[2].max_output_tokens == 64


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "f.jsonl:1: not valid JSON"),
    (line(expect="answer"), "expect"),
    (line(id="Bad Id"), "id must be"),
    (line(timeline=[]), "timeline"),
    (line(timeline=[{"sya": "hi", "role": "query"}]), "timeline[0]: an item needs one of"),
    (line(timeline=[{"say": "hi", "role": "query", "speed": 2}]), "timeline[0]: speed: Extra inputs"),
    (line(timeline=[{"say": "hi", "voice": "festival:kal", "role": "query"}]), "voice must be ENGINE:NAME"),
    (line(timeline=[{"play": "../etc/passwd", "role": "query"}]), "play must be PACKAGE:relative/path"),
    (line(timeline=[{"play": "alsa:Noise.wav", "start": 2, "end": 1, "role": "query"}]), "must come after start"),
    (line(timeline=[{"silence": -1}, {"say": "hi", "role": "query"}]), "timeline[0]: silence"),
    (line(timeline=[{"say": "hi", "role": "narrator"}]), "timeline[0]: role"),
    (line(timeline=[{"silence": 1.0}]), "the timeline has no speech"),
    (line(timeline=[{"say": "hi", "role": "background"}]), "respond: needs a query"),
    (line(expect="no_response"), "no_response: background speech only"),
    (line(expect="wait"), "wait: needs a query with a pause"),
    (line(expect="wait", timeline=[{"silence": 1, "role": "pause"}, {"say": "hi", "role": "query"}]),
     "a pause must sit between two parts of a query"),
    (line(expect="interrupt", timeline=[{"say": "hi", "role": "query"}, {"say": "stop", "role": "interrupt"}]),
     "interrupt: needs a query, a wait_for"),
    (line(expect="no_interrupt", timeline=[{"say": "hi", "role": "query"}, {"wait_for": "reply"},
                                           {"say": "what", "role": "query"}]), "no_interrupt: needs"),
    (line(timeline=[{"say": "hi", "role": "query"}, {"silence": 30}, {"silence": 30}, {"silence": 30},
                    {"silence": 30.0}, {"silence": 1}]), "longer than 120 s"),
])
def test_bad_scenarios_are_refused_with_the_place_and_reason(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_lines([text], "f.jsonl")
    assert message in str(info.value) and str(info.value).startswith("f.jsonl:1:")


def test_duplicate_ids_and_empty_files_are_refused(tmp_path) -> None:
    with pytest.raises(ScenarioError, match=r"f\.jsonl:3: scenario id 's1' already used on line 1"):
        parse_lines([line(), "", line()], "f.jsonl")
    empty = tmp_path / "e.jsonl"
    empty.write_text("# nothing\n")
    with pytest.raises(ScenarioError, match="no scenarios"):
        load_scenarios(empty)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenarios(tmp_path / "missing.jsonl")

"""Scenario audio: synthesized and recorded sources, trimmed and levelled, mixed, cached, the same every time."""

from __future__ import annotations

import numpy as np
import pytest

from duo.evaluation.render import RATE, AudioCache, AudioPart, RenderError, Sources, WaitPart, render
from duo.evaluation.scenario import parse_scenario


def scenario(timeline: list, expect: str = "respond", sid: str = "t") -> object:
    return parse_scenario({"id": sid, "expect": expect, "timeline": timeline})


def active_rms(x: np.ndarray) -> float:
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(axis=1))
    return float(np.sqrt((rms[rms > rms.max() * 10 ** (-30 / 20)] ** 2).mean()))


def test_timeline_parts_segments_and_levels() -> None:
    s = scenario([{"silence": 0.5}, {"say": "tell me a long story", "role": "query"},
                  {"wait_for": "reply", "delay": 1.0},
                  {"say": "stop, what time is it", "voice": "flite:slt", "role": "interrupt", "gain_db": -6,
                   "over": [{"play": "alsa:Noise.wav", "gain_db": -20}]},
                  {"silence": 1.0}], expect="interrupt")
    first, wait, second = render(s)
    assert isinstance(first, AudioPart) and isinstance(wait, WaitPart) and isinstance(second, AudioPart)
    (query,) = first.segments
    assert query.role == "query" and query.start == 0.5 and query.end == pytest.approx(first.seconds, abs=1e-3)
    speech = first.samples[int(0.5 * RATE) :]
    edge, peak = int(0.03 * RATE), np.abs(speech).max()  # trimmed to the speech: sound within 30 ms of each end
    assert np.abs(speech[:edge]).max() > 0.01 * peak and np.abs(speech[-edge:]).max() > 0.01 * peak
    assert active_rms(speech) == pytest.approx(0.1, rel=0.15)  # the common speech level
    cut, bed = second.segments
    assert (cut.role, cut.layer, bed.role, bed.layer) == ("interrupt", False, "background", True)
    assert second.seconds == pytest.approx(cut.end + 1.0, abs=1e-3)
    assert np.abs(second.samples[int(cut.end * RATE) + 10 :]).max() == 0  # the trailing silence is silent
    alone = render(scenario([{"say": "stop, what time is it", "voice": "flite:slt", "role": "query",
                              "gain_db": -6}]))[0]
    mixed = second.samples[: alone.samples.size]
    assert active_rms(alone.samples) == pytest.approx(0.1 * 10 ** (-6 / 20), rel=0.15)
    assert 0 < np.abs(mixed - alone.samples).max() < 0.2  # the noise is under the query, quieter


def test_recordings_are_cut_where_asked() -> None:
    (part,) = render(scenario([{"play": "pyannote:audio/sample/sample.wav", "start": 6.6, "end": 12.6,
                                "role": "background"}, {"play": "alsa:Front_Center.wav", "role": "background"}],
                              expect="no_response"))
    call, alsa = part.segments
    assert 5.0 < call.end <= 6.0 and call.end == alsa.start
    assert 0.5 < alsa.end - alsa.start < 2.0


def test_rendering_is_deterministic_and_cached(tmp_path) -> None:
    s = scenario([{"say": "what is the capital of france", "voice": "piper:joe", "role": "query"},
                  {"silence": 0.3}, {"say": "thanks", "voice": "espeak-ng:en-us", "role": "query"}])
    fresh = Sources(remember=False)  # every sound synthesized again
    a, b = render(s, fresh)[0], render(s, fresh)[0]
    assert np.array_equal(a.samples, b.samples) and a.segments == b.segments
    cache = AudioCache(tmp_path, fresh)
    written = cache.parts(s)[0]
    assert len(list(tmp_path.glob("t-*.npz"))) == 1
    read = AudioCache(tmp_path, Sources(remember=False)).parts(s)[0]
    assert np.array_equal(read.samples, written.samples) and np.array_equal(read.samples, a.samples)
    assert read.segments == a.segments


def test_missing_sources_are_reported() -> None:
    with pytest.raises(RenderError, match="not installed"):
        render(scenario([{"play": "no_such_package_here:a.wav", "role": "query"}]))
    with pytest.raises(RenderError, match="not found"):
        render(scenario([{"play": "alsa:Nope.wav", "role": "query"}]))
    with pytest.raises(RenderError, match="unknown Piper voice"):
        render(scenario([{"say": "hi", "voice": "piper:amy", "role": "query"}]))
    with pytest.raises(RenderError, match="cannot cut"):
        render(scenario([{"play": "amfm_decompy:sample.wav", "start": 5, "role": "query"}]))

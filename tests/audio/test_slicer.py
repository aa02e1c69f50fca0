"""Streaming slicer on real and synthesized speech: slice lengths, pauses, events, and the call's turns."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from duo.audio.decode import load_file
from duo.audio.errors import AudioError, AudioFormatError
from duo.audio.events import AudioSlice, Event, SpeechStarted, SpeechStopped
from duo.audio.slicer import Slicer, SlicerConfig, push_batch

LONG = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden porch."


def voiced(x: np.ndarray) -> tuple[float, float]:
    """First and last second where the waveform is clearly not silent (synthesizers pad both ends)."""
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return loud[0] / 16_000, loud[-1] / 16_000


def run(x: np.ndarray, config: SlicerConfig | None = None, chunk: int = 1600) -> list[Event]:
    slicer = Slicer(config)
    events: list[Event] = []
    for i in range(0, x.size, chunk):
        events += slicer.push(x[i : i + chunk])
    return events + slicer.flush()


def slices(events: list[Event]) -> list[AudioSlice]:
    return [e for e in events if isinstance(e, AudioSlice)]


def test_config_limits() -> None:
    for bad in ({"slice_s": 0.4}, {"slice_s": 4.5}, {"pause_s": 0.0}, {"threshold": 1.0},
                {"threshold": 0.5, "neg_threshold": 0.6}, {"pre_roll_s": 2.0}):
        with pytest.raises(AudioError):
            SlicerConfig(**bad)


def test_silence_and_noise_make_no_events(alsa_dir: Path) -> None:
    assert run(np.zeros(48_000, dtype=np.float32)) == []
    assert run(load_file(alsa_dir / "Noise.wav")) == []


def test_long_speech_is_cut_into_2s_slices_then_closed_by_the_pause(synth: Callable[..., np.ndarray]) -> None:
    speech = synth(LONG)
    x = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16_000, np.float32)])
    events = run(x)
    assert isinstance(events[0], SpeechStarted) and abs(events[0].time_s - (0.5 + voiced(speech)[0])) < 0.15
    parts = slices(events)
    assert len(parts) >= 3 and all(not p.final for p in parts[:-1]) and parts[-1].final
    for p in parts[:-1]:
        assert 1.95 <= p.end_s - p.start_s <= 2.05
        assert abs(p.audio.size / 16_000 - (p.end_s - p.start_s)) < 1e-3
    for a, b in itertools.pairwise(parts):
        assert a.end_s == b.start_s and b.index == a.index + 1
    stop = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stop) == 1 and abs(stop[0].time_s - (0.5 + voiced(speech)[1])) < 0.15
    assert events.index(stop[0]) == len(events) - 2  # speech_stopped, then the final slice
    assert parts[-1].end_s - stop[0].time_s == pytest.approx(0.3, abs=0.07)  # closed once the pause is long enough
    assert {e.utterance_id for e in events} == {0}


def test_slice_length_is_configurable(synth: Callable[..., np.ndarray]) -> None:
    parts = slices(run(synth(LONG), SlicerConfig(slice_s=1.0)))
    assert len(parts) >= 5 and all(0.95 <= p.end_s - p.start_s <= 1.05 for p in parts[:-1])


def test_a_pause_closes_the_slice_early_and_starts_a_new_utterance(synth: Callable[..., np.ndarray]) -> None:
    a, b = synth("Turn on the lights."), synth("And close the door.")
    gap = np.zeros(16_000, dtype=np.float32)
    events = run(np.concatenate([a, gap, b, gap]))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStarted", "SpeechStopped", "AudioSlice", "SpeechStarted", "SpeechStopped", "AudioSlice"]
    first_stop, second_start = events[1], events[3]
    assert isinstance(first_stop, SpeechStopped) and isinstance(second_start, SpeechStarted)
    a_end = voiced(a)[1]
    b_start = (a.size + gap.size) / 16_000 + voiced(b)[0]
    assert a_end - 0.15 < first_stop.time_s <= a_end + 0.15
    assert b_start - 0.15 <= second_start.time_s < b_start + 0.15
    assert [s.utterance_id for s in slices(events)] == [0, 1] and all(s.final for s in slices(events))
    long_pause = run(np.concatenate([a, gap, b, gap]), SlicerConfig(pause_s=2.5))
    assert len([e for e in long_pause if isinstance(e, SpeechStarted)]) == 1


def test_chunking_does_not_change_the_result(synth: Callable[..., np.ndarray]) -> None:
    x = synth(LONG)
    ref = [(type(e).__name__, getattr(e, "time_s", None), getattr(e, "end_s", None)) for e in run(x, chunk=x.size)]
    odd = [(type(e).__name__, getattr(e, "time_s", None), getattr(e, "end_s", None)) for e in run(x, chunk=331)]
    assert ref == odd


def test_push_batch_equals_separate_streams(synth: Callable[..., np.ndarray], alsa_dir: Path) -> None:
    xs = [synth(LONG), load_file(alsa_dir / "Front_Right.wav"), np.zeros(20_000, dtype=np.float32)]
    alone = [[(type(e).__name__, getattr(e, "end_s", getattr(e, "time_s", 0))) for e in run(x)] for x in xs]
    slicers = [Slicer(), Slicer(), Slicer()]
    got: list[list[Event]] = [[], [], []]
    for i in range(0, max(x.size for x in xs), 3200):
        for k, ev in enumerate(push_batch(slicers, [x[i : i + 3200] for x in xs])):
            got[k] += ev
    for k, s in enumerate(slicers):
        got[k] += s.flush()
    assert [[(type(e).__name__, getattr(e, "end_s", getattr(e, "time_s", 0))) for e in g] for g in got] == alone


def test_flush_and_clear_mid_utterance(synth: Callable[..., np.ndarray]) -> None:
    x = synth(LONG)[:24_000]  # cut while speaking
    s = Slicer()
    events = s.push(x)
    assert s.speaking and isinstance(events[0], SpeechStarted)
    tail = s.flush()
    assert isinstance(tail[0], SpeechStopped) and isinstance(tail[1], AudioSlice) and tail[1].final
    assert tail[1].end_s == pytest.approx(x.size // 512 * 512 / 16_000)
    s2 = Slicer()
    s2.push(x)
    s2.clear()
    assert not s2.speaking and s2.flush() == []


def test_bad_samples_are_refused() -> None:
    with pytest.raises(AudioFormatError):
        Slicer().push(np.array([0.0, np.nan] * 600, dtype=np.float32))
    with pytest.raises(AudioFormatError):
        Slicer().push(np.zeros((10, 2), dtype=np.float32))


def test_speech_regions_agree_with_the_call_annotation(call_dir: Path) -> None:
    """The slicer's speech (start..stop) against the union of the reference speaker turns in sample.rttm."""
    events = run(load_file(call_dir / "sample.wav"))
    starts = [e.time_s for e in events if isinstance(e, SpeechStarted)]
    stops = [e.time_s for e in events if isinstance(e, SpeechStopped)]
    grid = np.arange(0, 30, 0.01)
    ours = np.zeros(grid.size, bool)
    for a, b in zip(starts, stops, strict=True):
        ours |= (grid >= a) & (grid < b)
    ref = np.zeros(grid.size, bool)
    for line in (call_dir / "sample.rttm").read_text().splitlines():
        onset, duration = float(line.split()[3]), float(line.split()[4])
        ref |= (grid >= onset) & (grid < onset + duration)
    recall = (ours & ref).sum() / ref.sum()
    precision = (ours & ref).sum() / ours.sum()
    assert recall >= 0.95 and precision >= 0.9, (recall, precision)
    assert starts[0] == pytest.approx(6.69, abs=0.2)  # first "Hello?"
    assert len(starts) >= 2  # the 0.43 s silence after it ends the first utterance


def _trimmed(x: np.ndarray) -> np.ndarray:
    """Speech without the synthesizer's silent padding, so the pauses are the test's own."""
    first, last = voiced(x)
    return x[int(first * 16_000) : int(last * 16_000) + 1]


def _feed(slicer: Slicer, x: np.ndarray, chunk: int = 512) -> list[Event]:
    events: list[Event] = []
    for i in range(0, x.size, chunk):
        events += slicer.push(x[i : i + chunk])
    return events


def test_early_close_resumes_within_the_window_and_is_confirmed_by_silence(synth) -> None:
    from duo.audio.events import PauseConfirmed

    speech, gap = _trimmed(synth("what is the capital")), np.zeros(6400, np.float32)  # 400 ms: past the early pause
    cfg = SlicerConfig(pause_s=0.5, early_pause_s=0.2, confirm_s=0.8)
    slicer = Slicer(cfg)
    slicer.early_ok = True  # the owner's judgement: the words are complete
    events = _feed(slicer, np.concatenate([speech, gap]))
    stop = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stop) == 1 and stop[0].early and slices(events)[-1].final  # closed after ~200 ms, not 500
    events = _feed(slicer, np.concatenate([_trimmed(synth("of france")), np.zeros(16_000, np.float32)]))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 1 and started[0].resumed  # within 800 ms of the pause: the same turn goes on
    assert [e for e in events if isinstance(e, PauseConfirmed)] == [
        PauseConfirmed(started[0].utterance_id, next(e for e in events if isinstance(e, SpeechStopped)).time_s)]

    late = Slicer(cfg)
    late.early_ok = True
    events = _feed(late, np.concatenate([speech, np.zeros(16_000, np.float32), synth("of france")]))
    kinds = [type(e).__name__ for e in events if not isinstance(e, AudioSlice)]
    assert kinds[:4] == ["SpeechStarted", "SpeechStopped", "PauseConfirmed", "SpeechStarted"]
    assert not [e for e in events if isinstance(e, SpeechStarted)][-1].resumed  # after the window: a new turn


def test_without_early_ok_the_long_pause_holds(synth) -> None:
    slicer = Slicer(SlicerConfig(pause_s=0.5, early_pause_s=0.2))
    events = _feed(slicer, np.concatenate([_trimmed(synth("what is the capital")), np.zeros(4800, np.float32)]))
    assert not [e for e in events if isinstance(e, SpeechStopped)]  # 300 ms of silence: still speaking
    events = _feed(slicer, np.zeros(8000, np.float32))
    assert [e.early for e in events if isinstance(e, SpeechStopped)] == [False]


def test_partials_come_every_interval_and_once_at_each_pause(synth) -> None:
    slicer = Slicer(SlicerConfig(pause_s=0.5))
    x = np.concatenate([synth("what is the capital of france"), np.zeros(16_000, np.float32)])
    partials: list[AudioSlice] = []
    for i in range(0, x.size, 1600):
        events = slicer.push(x[i : i + 1600])
        if (piece := slicer.partial(0.3)) is not None:
            partials.append(piece)
        if any(isinstance(e, AudioSlice) for e in events):
            break
    assert len(partials) >= 3 and all(p.partial for p in partials)
    assert [p.final for p in partials].count(True) >= 1 and partials[-1].final  # the pause's own partial
    assert all(b.end_s - a.end_s >= 0.3 - 1e-6 or b.final for a, b in itertools.pairwise(partials))
    assert slicer.partial(0.0) is None


def test_a_final_slice_says_where_its_pause_partial_ended_when_only_silence_followed(synth) -> None:
    """`heard_s` names the pause's partial that read every word; speech after that partial, a commit, or no
    partial at all leave it None (the slice must be decoded)."""
    said = _trimmed(synth("what is the capital of france"))
    pause, tail = np.zeros(3200, np.float32), np.zeros(16_000, np.float32)

    def finals(x: np.ndarray, every: float, commit: bool = False) -> tuple[list[AudioSlice], list[AudioSlice]]:
        slicer, partials, slices = Slicer(SlicerConfig(slice_s=4.0, pause_s=0.5)), [], []
        for i in range(0, x.size, 1600):
            slices += [e for e in slicer.push(x[i : i + 1600]) if isinstance(e, AudioSlice)]
            if (piece := slicer.partial(every)) is not None:
                partials.append(piece)
        if commit:
            slices += [e for e in slicer.flush() if isinstance(e, AudioSlice)]
        return partials, [s for s in slices if s.final]

    partials, [final] = finals(np.concatenate([said, tail]), 10.0)
    assert partials[-1].final and final.heard_s == partials[-1].end_s < final.end_s
    assert final.audio[: partials[-1].audio.size].tobytes() == partials[-1].audio.tobytes()
    _, [plain] = finals(np.concatenate([said, tail]), 0.0)
    assert plain.heard_s is None  # no partial was taken
    short = _trimmed(synth("lights off"))
    partials, [final] = finals(np.concatenate([short, pause, short, tail]), 10.0)
    assert sum(p.final for p in partials) >= 2 and final.heard_s == partials[-1].end_s  # the last pause's
    _, [committed] = finals(np.concatenate([said, pause[:1600]]), 10.0, commit=True)
    assert committed.heard_s is None


def test_speech_after_the_pause_partial_leaves_the_final_slice_unheard(synth) -> None:
    """A partial taken as a pause began, then more words before the pause ended: the partial did not hear them."""
    slicer = Slicer(SlicerConfig(slice_s=4.0, pause_s=0.5))
    x = np.concatenate([_trimmed(synth("what is the capital")), np.zeros(3200, np.float32)])
    paused = None
    for i in range(0, x.size, 1600):
        slicer.push(x[i : i + 1600])
        if (piece := slicer.partial(10.0)) is not None and piece.final:
            paused = piece
    assert paused is not None  # 200 ms of silence: the pause began, it has not ended
    events = slicer.push(np.concatenate([_trimmed(synth("of france")), np.zeros(16_000, np.float32)]))
    [final] = [e for e in events if isinstance(e, AudioSlice) and e.final]
    assert final.heard_s is None and final.end_s > paused.end_s + 0.5


def test_the_length_limit_does_not_cut_a_pause_its_partial_heard(synth) -> None:
    """1.5 s of words then a 1 s pause, with a 2 s limit: with the pause's partial taken the limit cuts nothing
    (the slice closes final at the pause's end, whole) and no partial comes while the pause lasts; speech
    resuming past the limit closes the slice at once. Without partials the limit cuts the pause as before."""
    said = _trimmed(synth("what is the capital of france"))[: 24_000]

    def hear(x: np.ndarray, every: float, slicer: Slicer | None = None) -> tuple[list[AudioSlice], list[AudioSlice]]:
        slicer = slicer or Slicer(SlicerConfig(slice_s=2.0, pause_s=1.0))
        partials, slices = [], []
        for i in range(0, x.size, 1600):
            slices += [e for e in slicer.push(x[i : i + 1600]) if isinstance(e, AudioSlice)]
            if (piece := slicer.partial(every)) is not None:
                partials.append(piece)
        return partials, slices

    partials, [final] = hear(np.concatenate([said, np.zeros(24_000, np.float32)]), 0.3)
    assert final.final and final.index == 0 and final.end_s > 2.4 and final.heard_s == partials[-1].end_s
    assert partials[-1].final and all(p.end_s < said.size / 16_000 + 0.2 for p in partials)  # none in the pause
    _, slices = hear(np.concatenate([said, np.zeros(24_000, np.float32)]), 0.0)
    assert [s.final for s in slices] == [False, True] and slices[0].end_s == pytest.approx(2.0, abs=0.04)
    slicer = Slicer(SlicerConfig(slice_s=2.0, pause_s=1.0))
    _, slices = hear(np.concatenate([said, np.zeros(12_800, np.float32)]), 0.3, slicer)  # 0.8 s of silence
    assert slices == []  # past the limit, inside the pause
    _, [cut] = hear(_trimmed(synth("and italy"))[:3200], 0.3, slicer)
    assert not cut.final and cut.end_s < 2.6  # the words that resumed it opened the next slice


def test_a_run_of_speech_frames_is_an_onset_until_it_is_speech_or_breaks() -> None:
    """`onset_s` tells the run's start from its first frame; speech takes over at `min_speech_s`; a run that
    breaks first leaves no onset and no event."""
    slicer, frame = Slicer(SlicerConfig(min_speech_s=0.096)), np.zeros(512, dtype=np.float32)

    def feed(*probs: float) -> list[Event]:
        return [e for p in probs for e in slicer.advance(frame, p)]

    assert feed(0.1, 0.1) == [] and slicer.onset_s is None
    assert feed(0.9) == [] and slicer.onset_s == pytest.approx(0.064)
    assert feed(0.8) == [] and slicer.onset_s == pytest.approx(0.064)
    assert feed(0.2) == [] and slicer.onset_s is None  # two frames of three: a click, not speech
    assert feed(0.9) == [] and slicer.onset_s == pytest.approx(0.160)
    started = feed(0.9, 0.9)
    assert [type(e) for e in started] == [SpeechStarted] and started[0].time_s == pytest.approx(0.160)
    assert slicer.speaking and slicer.onset_s is None


def test_a_pause_that_begins_as_the_limit_is_reached_is_not_cut_before_its_partial() -> None:
    """Speech up to two frames short of the 2 s limit, then silence fed in one chunk that reaches the limit:
    with partials the slice is not cut there (it would leave a final slice of silence to decode); the pause's
    partial that follows hears every word, and the final slice takes its reading. Without partials the limit
    cuts, as before."""
    frame = np.zeros(512, dtype=np.float32)

    def hear(every: float) -> tuple[list[AudioSlice], list[AudioSlice]]:
        slicer, partials, slices = Slicer(SlicerConfig(slice_s=2.0, pause_s=0.5)), [], []

        def feed(*probs: float) -> None:
            slices.extend(e for p in probs for e in slicer.advance(frame, p) if isinstance(e, AudioSlice))
            if (piece := slicer.partial(every)) is not None:
                partials.append(piece)

        while slicer.time_s < 60 * 0.032 - 1e-6:  # speech from the stream's start: the slice begins at 0
            feed(0.9)  # ... and the limit falls on frame 62 (2 s less half a frame)
        feed(0.0, 0.0)  # the pause begins, and the limit is reached, within one chunk
        for _ in range(20):
            feed(0.0)
        return partials, slices

    partials, slices = hear(0.3)
    assert [s.final for s in slices] == [True] and slices[0].heard_s == partials[-1].end_s
    assert partials[-1].final and partials[-1].start_s == slices[0].start_s  # the pause's partial: every word
    _, slices = hear(0.0)
    assert [s.final for s in slices] == [False, True] and slices[1].heard_s is None

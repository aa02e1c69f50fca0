"""Slices -> text with the utterance as context: cut words come out whole, silence makes no text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from duo.audio.asr import Recognizer
from duo.audio.decode import load_file
from duo.audio.errors import AudioError
from duo.audio.events import AudioSlice, SpeechStarted, SpeechStopped, TextSlice
from duo.audio.pipeline import Output, stream_events, utterances
from duo.audio.slicer import SlicerConfig
from duo.audio.textnorm import normalize, wer
from duo.audio.transcriber import StreamTranscriber, TranscriberConfig, transcribe_batch

QUERIES = [
    "What is the weather like in Paris tomorrow?",
    "Set a timer for ten minutes.",
    "Remind me to call my mother at six.",
    "Play some relaxing music in the kitchen.",
    "How far is the moon from the earth?",
    "Turn off the lights in the living room.",
    "Can you recommend a good book about history?",
    "What time does the pharmacy close today?",
]
LONG = ("Please remind me tomorrow morning to water the plants on the balcony, then call the dentist about "
        "my appointment, and finally order a birthday present for my sister. After that, book a table for two at "
        "the Italian restaurant near the station for Friday evening.")


def transcribe_file(path: Path, recognizer: Recognizer) -> list[Output]:
    """All events and text slices of an audio file, as a live session hears it."""
    return list(stream_events(load_file(path), recognizer))


def same(a: list[TextSlice], b: list[TextSlice]) -> bool:
    """Equal slices; the no-speech probability (computed with other padding) within float error."""
    def rounded(t: TextSlice) -> TextSlice:
        return dataclasses.replace(t, no_speech_prob=round(t.no_speech_prob, 4))

    return [rounded(t) for t in a] == [rounded(t) for t in b]


def texts(outputs: list) -> list[TextSlice]:  # type: ignore[type-arg]
    return [o for o in outputs if isinstance(o, TextSlice)]


def test_long_utterance_over_many_slices_keeps_every_word(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    """15 s in one utterance, with the context window capped at 6 s so it has to move twice."""
    x = synth(LONG, "flite")
    outputs = list(stream_events(x, tiny, SlicerConfig(pause_s=2.0), TranscriberConfig(max_window_s=6.0)))
    parts = texts(outputs)
    assert len(parts) >= 7 and [p.final for p in parts] == [False] * (len(parts) - 1) + [True]
    joined = " ".join(p.text for p in parts if p.text)
    assert normalize(joined) == normalize(parts[-1].utterance_text)  # slices add up to the utterance, no repeats
    assert wer(LONG, parts[-1].utterance_text) <= 0.12, parts[-1].utterance_text
    for p in parts[:-1]:  # each non-final slice's words are a prefix of the final text
        assert normalize(parts[-1].utterance_text)[: len(normalize(p.utterance_text))] == normalize(p.utterance_text)


def test_words_cut_by_the_slice_edge_are_not_split(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    """Cut the same speech at many offsets: a word straddling a boundary must never come out in pieces."""
    x = synth("Tell me about the extraordinary architecture of Barcelona.", "flite")
    for offset in (0, 5600):
        padded = np.concatenate([np.zeros(offset, np.float32), x, np.zeros(8000, np.float32)])
        final = utterances(list(stream_events(padded, tiny, SlicerConfig(slice_s=1.0))))
        assert len(final) == 1 and wer("Tell me about the extraordinary architecture of Barcelona.", final[0]) <= 0.15


@pytest.mark.parametrize("engine", ["flite", "espeak-ng"])
def test_synthesized_queries_come_back_as_their_text(
    tiny: Recognizer, synth: Callable[..., np.ndarray], engine: str
) -> None:
    errors = []
    for query in QUERIES[:6]:
        errors.append(wer(query, " ".join(utterances(list(stream_events(synth(query, engine), tiny))))))
    exact = sum(e == 0 for e in errors)
    print(f"{engine}: tiny.en mean WER {np.mean(errors):.3f}, {exact}/{len(errors)} exact")
    # tiny.en reads flite's voice nearly perfectly and espeak-ng's robotic one less well (about 15 % WER)
    assert np.mean(errors) <= (0.05 if engine == "flite" else 0.3) and exact >= (5 if engine == "flite" else 2)


def test_noise_gives_no_text_even_when_forced_past_the_vad(tiny: Recognizer, alsa_dir: Path) -> None:
    noise = load_file(alsa_dir / "Noise.wav")
    assert transcribe_file(alsa_dir / "Noise.wav", tiny) == []  # the VAD gate: no utterance at all
    result = StreamTranscriber(tiny).transcribe(AudioSlice(0, 0, 0.0, noise.size / 16_000, True, noise))
    assert result.text == "" and result.utterance_text == "" and result.no_speech_prob > 0.6


def test_call_transcript_and_wer(tiny: Recognizer, call_dir: Path) -> None:
    reference = " ".join(line.split(None, 5)[5] for line in (call_dir / "sample.stm").read_text().splitlines())
    outputs = transcribe_file(call_dir / "sample.wav", tiny)
    hypothesis = " ".join(utterances(outputs))
    error = wer(reference, hypothesis)
    print(f"call: tiny.en streaming WER {error:.3f}")
    assert error <= 0.25
    kinds = [type(o) for o in outputs]
    assert kinds.count(SpeechStarted) == kinds.count(SpeechStopped) >= 2
    ends = [o.end_s for o in texts(outputs)]
    assert ends == sorted(ends) and ends[-1] <= 30.0


def test_batch_across_streams_equals_each_alone(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    from duo.audio.slicer import Slicer

    clips = [synth(q, "flite") for q in QUERIES[:3]]
    alone = [utterances(list(stream_events(c, tiny))) for c in clips]
    streams, pieces = [StreamTranscriber(tiny) for _ in clips], []
    for k, clip in enumerate(clips):
        s = Slicer()
        pieces += [(streams[k], e) for e in [*s.push(clip), *s.flush()] if isinstance(e, AudioSlice)]
    out = transcribe_batch(pieces)  # several slices per stream: run in rounds, in order
    got = [[t.utterance_text for t, (st, _) in zip(out, pieces, strict=True) if st is streams[k] and t.final]
           for k in range(len(clips))]
    assert got == alone


def test_misuse_is_reported(tiny: Recognizer) -> None:
    t = StreamTranscriber(tiny)
    with pytest.raises(AudioError, match="out of order"):
        t.transcribe(AudioSlice(0, 3, 0.0, 1.0, False, np.zeros(16_000, np.float32)))
    with pytest.raises(AudioError):
        TranscriberConfig(max_window_s=40)


def test_partials_commit_nothing_and_foretell_the_slice(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    """A partial of the open slice reads its words so far; the slices after it come out as without it (the same
    slices: a slicer that hands out partials cuts no pause its partial heard, recognized or not)."""
    from duo.audio.slicer import Slicer

    x = np.concatenate([synth("Set a timer for ten minutes."), np.zeros(16_000, np.float32)])

    def hear(with_partials: bool) -> tuple[list[TextSlice], list[TextSlice]]:
        slicer, stream = Slicer(SlicerConfig(slice_s=1.0)), StreamTranscriber(tiny)
        partial_texts, slice_texts = [], []
        for i in range(0, x.size, 1600):
            pieces = [e for e in slicer.push(x[i : i + 1600]) if isinstance(e, AudioSlice)]
            if (piece := slicer.partial(0.3)) is not None and with_partials:
                partial_texts.append(stream.transcribe(piece))
            slice_texts += [stream.transcribe(p) for p in pieces]
        return partial_texts, slice_texts

    partials, with_them = hear(True)
    assert same(with_them, hear(False)[1]) and with_them[-1].final  # nothing committed by a partial
    assert partials and all(p.partial for p in partials)
    paused = [p for p in partials if p.final]  # at the pause: the words of the last slice, none held back
    assert paused and normalize(paused[-1].utterance_text) == normalize(with_them[-1].utterance_text)


def test_a_final_slice_its_pause_partial_heard_takes_that_reading_without_a_decode(
        tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    """The partial at the pause read every word of the final slice (only silence came after): the slice takes
    its words with no decoder pass, commits them, and says what a stream without partials says."""
    from duo.audio.slicer import Slicer

    x = np.concatenate([synth("Turn off the lights in the living room."), np.zeros(16_000, np.float32)])
    calls: list[int] = []
    tiny.whisper.model.model.decoder.register_forward_hook(lambda *_: calls.append(1))
    slicer, stream, alone = Slicer(SlicerConfig(slice_s=4.0)), StreamTranscriber(tiny), StreamTranscriber(tiny)
    partial = final = None
    for i in range(0, x.size, 1600):
        pieces = [e for e in slicer.push(x[i : i + 1600]) if isinstance(e, AudioSlice)]
        if (piece := slicer.partial(10.0)) is not None and piece.final:
            partial = stream.transcribe(piece)
        final = next((p for p in pieces if p.final), final)
    assert partial is not None and final is not None and final.heard_s == partial.end_s
    calls.clear()
    text = stream.transcribe(final)
    assert not calls and not text.partial and text.final
    assert same([text], [alone.transcribe(final)])
    assert normalize(text.utterance_text)[:2] == ["turn", "off"] and len(normalize(text.utterance_text)) >= 6
    assert stream.reuse(final) is None  # used once: the utterance is committed and closed


def test_a_final_slice_the_partial_did_not_hear_is_decoded(tiny: Recognizer, synth: Callable[..., np.ndarray]) -> None:
    """A reading stands only for the slice it was taken of, up to where it heard: otherwise the slice decodes,
    from the partial's words as its draft."""
    from duo.audio.slicer import Slicer

    x = np.concatenate([synth("Set a timer for ten minutes."), np.zeros(16_000, np.float32)])
    slicer, stream = Slicer(SlicerConfig(slice_s=4.0)), StreamTranscriber(tiny)
    final = None
    for i in range(0, x.size, 1600):
        pieces = [e for e in slicer.push(x[i : i + 1600]) if isinstance(e, AudioSlice)]
        if (piece := slicer.partial(10.0)) is not None and piece.final:
            stream.transcribe(piece)
        final = next((p for p in pieces if p.final), final)
    assert final is not None and final.heard_s is not None
    calls: list[int] = []
    tiny.whisper.model.model.decoder.register_forward_hook(lambda *_: calls.append(1))
    moved = dataclasses.replace(final, heard_s=final.heard_s - 0.032)  # heard less than the slice says
    text = stream.transcribe(moved)
    assert calls and {"timer", "ten", "minutes"} <= set(normalize(text.utterance_text))


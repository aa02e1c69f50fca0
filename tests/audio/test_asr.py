"""Batched Whisper decoding on real speech: references, silence gate inputs, prefixes, batching, languages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from duo.audio.asr import DecodeRequest, Recognizer
from duo.audio.decode import load_file
from duo.audio.errors import AudioError, AudioFormatError
from duo.audio.textnorm import normalize
from tests.audio.conftest import ALSA_VOICES


def test_alsa_voice_clips_come_back_as_their_names(base: Recognizer, alsa_dir: Path) -> None:
    """All eight clips in one batch on Whisper base (multilingual, English forced)."""
    clips = [load_file(alsa_dir / f"{name}.wav") for name in ALSA_VOICES]
    results = base.decode([DecodeRequest(c, language="en") for c in clips])
    for name, result in zip(ALSA_VOICES, results, strict=True):
        assert normalize(base.text(result.tokens)) == normalize(name.replace("_", " ")), name
        assert result.no_speech_prob < 0.3 and result.language == "en"


def test_language_is_detected_when_not_given(base: Recognizer, define_it: np.ndarray) -> None:
    result = base.decode([DecodeRequest(define_it, language=None)])[0]
    assert result.language == "en" and normalize(base.text(result.tokens)) == ["how", "do", "we", "define", "it"]
    with pytest.raises(AudioError, match="language"):
        base.decode([DecodeRequest(define_it, language="xx")])


def test_define_it(tiny: Recognizer, define_it: np.ndarray) -> None:
    result = tiny.decode([DecodeRequest(define_it)])[0]
    assert tiny.text(result.tokens).strip() == "How do we define it?"
    assert result.avg_logprob > -1.0 and result.no_speech_prob < 0.2


def test_noise_is_judged_no_speech(tiny: Recognizer, alsa_dir: Path) -> None:
    result = tiny.decode([DecodeRequest(load_file(alsa_dir / "Noise.wav"))])[0]
    assert result.no_speech_prob > 0.6 and result.avg_logprob < -1.0  # the gate's two conditions


def test_batch_equals_one_by_one(tiny: Recognizer, alsa_dir: Path, define_it: np.ndarray) -> None:
    tok = tiny.whisper.tokenizer
    requests = [
        DecodeRequest(define_it),
        DecodeRequest(load_file(alsa_dir / "Side_Left.wav"), prompt=tok.encode(" Front.", add_special_tokens=False)),
        DecodeRequest(define_it, prefix=tok.encode(" How do", add_special_tokens=False)),
    ]
    batched = tiny.decode(requests)
    for request, together in zip(requests, batched, strict=True):
        alone = tiny.decode([request])[0]
        assert alone.tokens == together.tokens
        assert alone.no_speech_prob == pytest.approx(together.no_speech_prob, abs=1e-4)


def test_forced_prefix_is_continued_not_repeated(tiny: Recognizer, define_it: np.ndarray) -> None:
    prefix = tiny.whisper.tokenizer.encode(" How do", add_special_tokens=False)
    result = tiny.decode([DecodeRequest(define_it, prefix=prefix)])[0]
    assert tiny.text(result.tokens).strip() == "we define it?"


def test_token_budget_is_respected(tiny: Recognizer, call_dir: Path) -> None:
    result = tiny.decode([DecodeRequest(load_file(call_dir / "sample.wav"), max_new_tokens=5)])[0]
    assert len(result.tokens) == 5


def test_bad_audio_is_refused(tiny: Recognizer) -> None:
    with pytest.raises(AudioFormatError):
        tiny.decode([DecodeRequest(np.zeros(0, dtype=np.float32))])
    with pytest.raises(AudioFormatError):
        tiny.decode([DecodeRequest(np.zeros(16_000 * 31, dtype=np.float32))])
    with pytest.raises(AudioError, match="448"):
        tiny.decode([DecodeRequest(np.zeros(16_000, dtype=np.float32), prefix=[220] * 450)])
    assert tiny.decode([]) == []


def _passes(recognizer: Recognizer) -> list[int]:
    """A counter of the decoder's forward passes (one entry per pass) for the recognizer's lifetime."""
    calls: list[int] = []
    recognizer.whisper.model.model.decoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_a_draft_changes_the_passes_not_the_result(tiny: Recognizer, define_it: np.ndarray) -> None:
    """Right, half right, wrong, too long or past the budget: the tokens and scores are greedy's own, and
    a right draft is verified in the first pass alone."""
    plain = tiny.decode([DecodeRequest(define_it)])[0]
    said = plain.tokens
    assert len(said) >= 4
    calls = _passes(tiny)
    drafts = [said, said[:2], [*said[:1], said[2], *said[1:]], [*said, *said], [said[0] + 1], []]
    for draft in drafts:
        calls.clear()
        result = tiny.decode([DecodeRequest(define_it, draft=draft)])[0]
        assert result.tokens == said, draft
        assert result.avg_logprob == pytest.approx(plain.avg_logprob, abs=1e-3)
        assert result.no_speech_prob == pytest.approx(plain.no_speech_prob, abs=1e-4)
        if draft[: len(said)] == said:
            assert len(calls) == 1, "a right draft needs no step after the first pass"
        else:
            assert len(calls) > 1
    capped = tiny.decode([DecodeRequest(define_it, draft=said, max_new_tokens=2)])[0]
    assert capped.tokens == said[:2]


def test_drafts_in_one_batch_equal_each_alone(tiny: Recognizer, alsa_dir: Path, define_it: np.ndarray) -> None:
    side = load_file(alsa_dir / "Side_Left.wav")
    said = tiny.decode([DecodeRequest(define_it)])[0].tokens
    requests = [DecodeRequest(define_it, draft=said), DecodeRequest(side, draft=said[:3]), DecodeRequest(side),
                DecodeRequest(define_it, draft=said[1:])]
    batched = tiny.decode(requests)
    for request, together in zip(requests, batched, strict=True):
        assert tiny.decode([request])[0].tokens == together.tokens
    assert batched[0].tokens == said and batched[1].tokens == batched[2].tokens

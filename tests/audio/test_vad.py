"""Silero VAD with explicit per-stream state: same numbers as the packaged stateful model, batchable."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from duo.audio.decode import load_file
from duo.audio.errors import AudioFormatError
from duo.audio.vad import FRAME, SileroVad, VadState, silero_model_path


def frames_of(x: np.ndarray) -> np.ndarray:
    return x[: x.size // FRAME * FRAME]


def test_speech_is_speech_and_noise_is_not(alsa_dir: Path) -> None:
    vad = SileroVad.shared()
    speech = vad.frame_probs(frames_of(load_file(alsa_dir / "Front_Center.wav")), VadState())
    noise = vad.frame_probs(frames_of(load_file(alsa_dir / "Noise.wav")), VadState())
    assert (speech > 0.9).sum() >= 20  # ~0.7 s of clear speech
    assert noise.max() < 0.5


def test_matches_the_packaged_stateful_model(alsa_dir: Path) -> None:
    import torch

    x = frames_of(load_file(alsa_dir / "Front_Left.wav"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        wrapper = torch.jit.load(str(silero_model_path()))
    wrapper.reset_states()
    with torch.inference_mode():
        ref = np.array([wrapper(torch.from_numpy(x[i : i + FRAME]), 16_000).item() for i in range(0, x.size, FRAME)])
    ours = SileroVad.shared().frame_probs(x, VadState())
    assert np.allclose(ours, ref, atol=1e-5)


def test_batch_of_streams_equals_each_alone(alsa_dir: Path) -> None:
    vad = SileroVad.shared()
    a = frames_of(load_file(alsa_dir / "Rear_Left.wav"))[: 30 * FRAME]
    b = frames_of(load_file(alsa_dir / "Noise.wav"))[: 30 * FRAME]
    alone = [vad.frame_probs(a, VadState()), vad.frame_probs(b, VadState())]
    states = [VadState(), VadState()]
    batched = np.stack([vad.batch_probs(np.stack([a[k * FRAME : (k + 1) * FRAME], b[k * FRAME : (k + 1) * FRAME]]),
                                        states) for k in range(30)], axis=1)
    assert np.allclose(batched, np.stack(alone), atol=1e-5)


def test_wrong_shapes_are_refused() -> None:
    vad = SileroVad.shared()
    with pytest.raises(AudioFormatError):
        vad.frame_probs(np.zeros(FRAME + 1, dtype=np.float32), VadState())
    with pytest.raises(AudioFormatError):
        vad.batch_probs(np.zeros((2, FRAME), dtype=np.float32), [VadState()])

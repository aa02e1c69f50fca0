"""Silero VAD, loaded once and shared: per-stream recurrent state lives in `VadState`, not in the model.

The packaged TorchScript wrapper keeps its state inside the module (one stream per model object) and its
`silero_vad` Python package pins torch to one thread on import; we load the `.jit` file directly and call its
stateless inner network with an explicit state, which lets many streams share one model and batch frames.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from duo.audio.decode import SAMPLE_RATE
from duo.audio.errors import AudioFormatError, ModelLoadError

log = logging.getLogger(__name__)

FRAME = 512
"""Samples per VAD decision at 16 kHz (32 ms), fixed by the Silero v5 model."""
FRAME_S = FRAME / SAMPLE_RATE
CONTEXT = 64
"""Samples of the previous frame the model sees in front of each frame."""


def silero_model_path() -> Path:
    """The TorchScript model shipped in the `silero-vad` package (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the silero-vad package is not installed (pip install 'duo[audio]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise ModelLoadError(f"silero-vad is installed but has no model file at {path.name}")
    return path


@dataclass
class VadState:
    """The recurrent state and trailing context of one audio stream."""

    state: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, 128), dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, dtype=np.float32))


class SileroVad:
    """Speech probability per 32 ms frame; one instance serves any number of streams."""

    _shared: SileroVad | None = None
    _lock = threading.Lock()

    def __init__(self, path: str | Path | None = None) -> None:
        import torch

        model_path = Path(path) if path else silero_model_path()
        try:
            with warnings.catch_warnings():  # torch 2.13 flags TorchScript as deprecated; the model ships as it
                warnings.simplefilter("ignore", DeprecationWarning)
                wrapper = torch.jit.load(str(model_path), map_location="cpu")
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load Silero VAD from {model_path.name}: {exc}") from exc
        wrapper.eval()
        self._net = wrapper._model
        self._torch = torch
        log.info("vad_loaded path=%s", model_path.name)

    @classmethod
    def shared(cls) -> SileroVad:
        """The process-wide instance (loading takes ~0.1 s; the model is ~2 MB)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def frame_probs(self, samples: np.ndarray, state: VadState) -> np.ndarray:
        """Speech probabilities of consecutive whole frames of one stream (len(samples) % 512 == 0)."""
        if samples.ndim != 1 or samples.size % FRAME:
            raise AudioFormatError(f"VAD needs a 1-D multiple of {FRAME} samples, got shape {samples.shape}")
        n = samples.size // FRAME
        out = np.empty(n, dtype=np.float32)
        for i in range(n):
            frame = samples[i * FRAME : (i + 1) * FRAME]
            out[i] = self.batch_probs(frame[None, :], [state])[0]
        return out

    def judge(self, frames: Sequence[np.ndarray], states: Sequence[VadState]) -> list[np.ndarray]:
        """Each stream's whole frames ((n_i, 512) each), frame k of every stream in one batched call."""
        out = [np.empty(len(f), dtype=np.float32) for f in frames]
        for k in range(max((len(f) for f in frames), default=0)):
            rows = [i for i, f in enumerate(frames) if k < len(f)]
            probs = self.batch_probs(np.stack([frames[i][k] for i in rows]), [states[i] for i in rows])
            for i, prob in zip(rows, probs, strict=True):
                out[i][k] = prob
        return out

    def batch_probs(self, frames: np.ndarray, states: list[VadState]) -> np.ndarray:
        """One frame from each of several streams in a single call; updates each stream's state."""
        torch = self._torch
        if frames.ndim != 2 or frames.shape[1] != FRAME or frames.shape[0] != len(states):
            raise AudioFormatError(f"expected ({len(states)}, {FRAME}) frames, got {frames.shape}")
        ctx = np.stack([s.context for s in states])
        x = torch.from_numpy(np.concatenate([ctx, frames.astype(np.float32, copy=False)], axis=1))
        state = torch.from_numpy(np.concatenate([s.state for s in states], axis=1))
        with torch.inference_mode():
            prob, new_state = self._net(x, state)
        new = new_state.numpy()
        for i, s in enumerate(states):
            s.state = new[:, i : i + 1].copy()
            s.context = frames[i, -CONTEXT:].astype(np.float32, copy=True)
        return prob.numpy().reshape(-1)

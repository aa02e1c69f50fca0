"""Turn what arrives (wire PCM16, float arrays, audio files) into float32 mono 16 kHz, the only form used inside.

Every entry point validates before it converts, so a bad chunk is rejected with an `AudioFormatError` that
names the problem instead of propagating NaNs into the VAD or Whisper.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np

from duo.audio.errors import AudioFormatError

SAMPLE_RATE = 16_000
"""The rate everything inside `duo.audio` works at (Silero VAD and Whisper both want 16 kHz)."""

WIRE_RATE = 24_000
"""The Realtime protocol's PCM16 rate: audio in by default, speech out always."""

WIRE_RATES = (16_000, WIRE_RATE)
"""Rates accepted for raw PCM16 from the wire (the Realtime protocol's 24 kHz default, 16 kHz selectable)."""

MIN_RATE, MAX_RATE = 4_000, 384_000


def check_rate(sample_rate: int) -> int:
    """Reject sample rates no microphone or file produces (zero, negative, absurdly high, non-integer)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioFormatError(f"sample rate must be an integer, got {sample_rate!r}")
    if not MIN_RATE <= int(sample_rate) <= MAX_RATE:
        raise AudioFormatError(f"sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    return int(sample_rate)


def resample(samples: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole signal with soxr (high quality); identity when the rates agree."""
    check_rate(rate_in)
    check_rate(rate_out)
    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def from_float(samples: np.ndarray, sample_rate: int, *, allow_empty: bool = False) -> np.ndarray:
    """Validate a float array (mono, or frames x channels which is averaged) and bring it to 16 kHz."""
    rate = check_rate(sample_rate)
    arr = np.asarray(samples)
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioFormatError(f"expected float samples, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    elif arr.ndim != 1:
        raise AudioFormatError(f"expected a 1-D (mono) or 2-D (frames x channels) array, got shape {arr.shape}")
    if arr.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.float32)
        raise AudioFormatError("audio is empty")
    if not np.isfinite(arr).all():
        raise AudioFormatError("audio contains NaN or infinite samples")
    arr = arr.astype(np.float32, copy=False)
    peak = float(np.abs(arr).max())
    if peak > 32.0:  # integers cast to float, not [-1, 1] audio: refuse rather than clip to noise
        raise AudioFormatError(f"float samples must lie in [-1, 1]; peak is {peak:g}")
    return np.clip(resample(arr, rate), -1.0, 1.0)


def decode_pcm16(data: bytes | bytearray | memoryview, sample_rate: int = WIRE_RATE) -> np.ndarray:
    """Decode little-endian signed 16-bit mono PCM at `sample_rate` (wire rates only) to float32 16 kHz."""
    rate = check_rate(sample_rate)
    if rate not in WIRE_RATES:
        raise AudioFormatError(f"PCM16 input must be 16000 or 24000 Hz, got {rate}")
    return resample(_pcm16_samples(data), rate)


def _pcm16_samples(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Little-endian signed 16-bit samples as float32 in [-1, 1), at their own rate."""
    raw = bytes(data)
    if not raw:
        raise AudioFormatError("audio is empty")
    if len(raw) % 2:
        raise AudioFormatError(f"PCM16 data must have an even number of bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def to_pcm16(samples: np.ndarray) -> bytes:
    """Encode float samples in [-1, 1] as little-endian PCM16 bytes (clipping, rounding to nearest)."""
    arr = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return (np.clip(np.round(arr * 32767.0), -32768, 32767).astype("<i2")).tobytes()


def load_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a WAV / FLAC / OGG file (anything libsndfile reads), mix to mono, resample to 16 kHz."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioFormatError(f"no such audio file: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFormatError(f"cannot read {p.name} as audio: {exc}") from exc
    if data.size == 0:
        raise AudioFormatError(f"{p.name} holds no samples")
    return from_float(data, int(rate))


class PcmStream:
    """Per-session decoder of wire chunks (PCM16, or G.711 `pcmu` / `pcma` at 8 kHz) into 16 kHz float32.

    Resampling each chunk on its own would put a filter transient at every chunk edge; this keeps one soxr
    stream so consecutive chunks join seamlessly. Validation is per chunk, so one bad chunk is rejected
    without poisoning the stream.
    """

    def __init__(self, sample_rate: int = WIRE_RATE, codec: str = "pcm16") -> None:
        from duo.audio import g711

        rate = check_rate(sample_rate)
        if codec in g711.CODECS:
            if rate != g711.G711_RATE:
                raise AudioFormatError(f"G.711 input is {g711.G711_RATE} Hz, got {rate}")
        elif codec != "pcm16":
            raise AudioFormatError(f"unknown codec {codec!r}")
        elif rate not in WIRE_RATES:
            raise AudioFormatError(f"PCM16 input must be 16000 or 24000 Hz, got {rate}")
        self.sample_rate, self.codec = rate, codec
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def push(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """Decode one chunk; returns the 16 kHz samples ready so far (may be a few ms behind the input)."""
        if self.codec == "pcm16":
            samples = _pcm16_samples(data)
        else:
            from duo.audio import g711

            if not data:
                raise AudioFormatError("audio is empty")
            samples = g711.decode(bytes(data), self.codec).astype(np.float32) / 32768.0
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=False)

    def push_base64(self, payload: str | bytes) -> np.ndarray:
        """Decode the base64 audio of one `input_audio_buffer.append` event."""
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise AudioFormatError(f"audio is not valid base64: {exc}") from exc
        return self.push(raw)

    def flush(self) -> np.ndarray:
        """Drain the resampler at the end of the stream (or on commit)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

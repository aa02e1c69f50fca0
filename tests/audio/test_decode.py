"""Input decoding: wire PCM16 (16/24 kHz, base64), float arrays, files; every malformed input has a clear error."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from duo.audio.decode import PcmStream, decode_pcm16, from_float, load_file, resample, to_pcm16
from duo.audio.errors import AudioError, AudioFormatError


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("rate", [16_000, 24_000])
def test_pcm16_at_wire_rates_becomes_16k_with_pitch_kept(rate: int) -> None:
    out = decode_pcm16(to_pcm16(tone(440, rate)), rate)
    assert out.dtype == np.float32 and out.size == 16_000
    assert abs(peak_hz(out) - 440) <= 2
    assert 0.45 < np.abs(out).max() <= 0.51


def test_base64_matches_raw() -> None:
    raw = to_pcm16(tone(300, 24_000, 0.25))
    assert np.allclose(PcmStream(16_000).push_base64(base64.b64encode(raw).decode()), decode_pcm16(raw, 16_000))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: decode_pcm16(b"\x00\x01\x02", 16_000), "even number of bytes"),
        (lambda: decode_pcm16(b"", 16_000), "empty"),
        (lambda: decode_pcm16(b"\x00\x00", 44_100), "16000 or 24000"),
        (lambda: PcmStream(24_000).push_base64("not base64!!"), "base64"),
        (lambda: from_float(np.array([0.1, np.nan], dtype=np.float32), 16_000), "NaN"),
        (lambda: from_float(np.array([0.1, np.inf]), 16_000), "NaN or infinite"),
        (lambda: from_float(np.zeros(0, dtype=np.float32), 16_000), "empty"),
        (lambda: from_float(np.zeros(10, dtype=np.int16), 16_000), "float samples"),
        (lambda: from_float(np.zeros((2, 2, 2), dtype=np.float32), 16_000), "shape"),
        (lambda: from_float(np.full(10, 1000.0, dtype=np.float32), 16_000), "[-1, 1]"),
        (lambda: from_float(np.zeros(10, dtype=np.float32), 0), "outside"),
        (lambda: from_float(np.zeros(10, dtype=np.float32), -16_000), "outside"),
        (lambda: from_float(np.zeros(10, dtype=np.float32), 10**9), "outside"),
        (lambda: from_float(np.zeros(10, dtype=np.float32), 16_000.5), "integer"),  # type: ignore[arg-type]
        (lambda: resample(np.zeros(10, dtype=np.float32), 16_000, 1), "outside"),
    ],
)
def test_bad_input_raises_typed_error(call, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message) as info:
        call()
    assert isinstance(info.value, AudioError) and isinstance(info.value, ValueError)


def test_stereo_float_is_mixed_and_resampled() -> None:
    left, right = tone(440, 48_000), np.zeros(48_000, dtype=np.float32)
    out = from_float(np.stack([left, right], axis=1), 48_000)
    assert out.size == 16_000 and 0.22 < np.abs(out).max() < 0.26 and abs(peak_hz(out) - 440) <= 2


def test_pcm_stream_joins_chunks_like_one_decode() -> None:
    raw = to_pcm16(tone(440, 24_000))
    stream = PcmStream(24_000)
    parts = [stream.push(raw[i : i + 960]) for i in range(0, len(raw), 960)] + [stream.flush()]
    assert np.array_equal(np.concatenate(parts), decode_pcm16(raw, 24_000))


def test_pcm_stream_rejects_a_bad_chunk_and_keeps_going() -> None:
    stream = PcmStream(16_000)
    good = to_pcm16(tone(200, 16_000, 0.1))
    assert stream.push(good).size == 1600
    with pytest.raises(AudioFormatError):
        stream.push(b"\x01\x02\x03")
    with pytest.raises(AudioFormatError):
        stream.push_base64("%%%")
    assert stream.push_base64(base64.b64encode(good)).size == 1600
    with pytest.raises(AudioFormatError):
        PcmStream(8_000)


def test_to_pcm16_clips_and_rounds() -> None:
    pcm = np.frombuffer(to_pcm16(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5], dtype=np.float32)), "<i2")
    assert pcm.tolist() == [0, 32767, -32767, 32767, -32768, 16384]


@pytest.mark.parametrize(("fmt", "ext"), [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")])
def test_files_of_each_format_read_back_at_16k(tmp_path: Path, fmt: str, ext: str) -> None:
    src = tone(440, 44_100)
    path = tmp_path / f"x.{ext}"
    sf.write(path, np.stack([src, src], axis=1), 44_100, format=fmt)
    out = load_file(path)
    assert abs(out.size - 16_000) <= 16 and abs(peak_hz(out) - 440) <= 2


def test_real_recording_and_unreadable_files(alsa_dir: Path, tmp_path: Path) -> None:
    clip = load_file(alsa_dir / "Front_Center.wav")  # 48 kHz original
    info = sf.info(alsa_dir / "Front_Center.wav")
    assert abs(clip.size - round(info.duration * 16_000)) <= 2
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVE" + bytes(range(256)))
    with pytest.raises(AudioFormatError, match="cannot read"):
        load_file(junk)
    with pytest.raises(AudioFormatError, match="no such"):
        load_file(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioFormatError, match="no samples"):
        load_file(empty)

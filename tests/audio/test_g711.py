"""G.711 μ-law / A-law against the standard library's reference codec, and through the wire decoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from duo.audio import g711
from duo.audio.decode import PcmStream
from duo.audio.errors import AudioFormatError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # Python < 3.13 ships it: an independent implementation


@pytest.mark.parametrize("codec, encode, decode", [("pcmu", "lin2ulaw", "ulaw2lin"), ("pcma", "lin2alaw", "alaw2lin")])
def test_every_sample_and_code_matches_the_reference(codec: str, encode: str, decode: str) -> None:
    samples = np.arange(-32768, 32768, dtype=np.int16)
    assert g711.encode(samples, codec) == getattr(audioop, encode)(samples.tobytes(), 2)
    codes = bytes(range(256))
    assert g711.decode(codes, codec).tobytes() == getattr(audioop, decode)(codes, 2)


@pytest.mark.parametrize("codec", g711.CODECS)
def test_the_wire_decoder_hears_a_tone_at_16k(codec: str) -> None:
    tone = (np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 16000).astype(np.int16)
    stream = PcmStream(8000, codec)
    out = np.concatenate([stream.push(g711.encode(tone[i : i + 800], codec)) for i in range(0, 8000, 800)])
    assert 14500 < out.size <= 16000  # twice the samples, less the resampler's delay
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5
    with pytest.raises(AudioFormatError):
        PcmStream(24000, codec)  # G.711 is 8 kHz

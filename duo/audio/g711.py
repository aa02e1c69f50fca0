"""G.711 μ-law and A-law (ITU-T G.711), the 8 kHz telephone codecs of the Realtime protocol.

Decoding is a table lookup of the 256 codes; encoding follows the standard's segment search, vectorized.
"""

from __future__ import annotations

import numpy as np

G711_RATE = 8000
CODECS = ("pcmu", "pcma")
_BIAS = 0x84


def _ulaw_to_linear(code: np.ndarray) -> np.ndarray:
    u = ~code.astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS)


def _alaw_to_linear(code: np.ndarray) -> np.ndarray:
    a = code.astype(np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    mant = (a & 0x0F) << 4
    t = np.where(seg == 0, mant + 8, (mant + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t)


_CODES = np.arange(256, dtype=np.uint8)
_DECODE = {"pcmu": _ulaw_to_linear(_CODES).astype(np.int16), "pcma": _alaw_to_linear(_CODES).astype(np.int16)}


def decode(data: bytes, codec: str) -> np.ndarray:
    """G.711 bytes to int16 samples."""
    return _DECODE[codec][np.frombuffer(data, dtype=np.uint8)]


def encode(samples: np.ndarray, codec: str) -> bytes:
    """int16 samples to G.711 bytes."""
    x = np.asarray(samples, dtype=np.int32)
    return (_encode_ulaw(x) if codec == "pcmu" else _encode_alaw(x)).astype(np.uint8).tobytes()


def _segment(mag: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    """The G.711 segment (exponent) of each magnitude: the first segment whose end it does not pass (8: over)."""
    return np.searchsorted(np.array(ends), mag, side="left")


_ULAW_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _encode_ulaw(x: np.ndarray) -> np.ndarray:
    v = x >> 2  # 14-bit
    mask = np.where(v < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(v), 8159) + (_BIAS >> 2)
    seg = _segment(mag, _ULAW_ENDS)
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    return np.where(seg >= 8, 0x7F, code) ^ mask


def _encode_alaw(x: np.ndarray) -> np.ndarray:
    v = x >> 3  # 13-bit
    mask = np.where(v >= 0, 0xD5, 0x55)
    mag = np.where(v >= 0, v, -v - 1)
    seg = _segment(mag, _ALAW_ENDS)
    code = (seg << 4) | np.where(seg < 2, (mag >> 1) & 0x0F, (mag >> np.maximum(seg, 1)) & 0x0F)
    return np.where(seg >= 8, 0x7F, code) ^ mask

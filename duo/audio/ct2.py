"""Reader for CTranslate2 model files (`model.bin`, spec v6), enough to convert Whisper out of them.

Layout: uint32 version, uint16-length-prefixed NUL-terminated spec name, uint32 revision, uint32 variable
count; per variable a name, uint8 rank, uint32 dims, uint8 dtype, uint32 byte count and the raw data; then
uint32 alias count and (alias, target) name pairs. Everything little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from duo.audio.errors import ModelLoadError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class _Reader:
    def __init__(self, buf: memoryview, name: str) -> None:
        self.buf, self.pos, self.name = buf, 0, name

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ModelLoadError(f"{self.name}: truncated at byte {self.pos} (wanted {n} more)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        return bytes(self.take(self.u16())).rstrip(b"\0").decode("utf-8")


def read_model_bin(parts: Iterable[str | Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a model.bin (optionally stored as several parts to concatenate); returns (spec name, variables).

    Aliases are resolved, so a tied weight appears under both names (sharing memory).
    """
    paths = [Path(p) for p in parts]
    name = paths[0].name if paths else "model.bin"
    try:
        data = b"".join(p.read_bytes() for p in paths)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {name}: {exc}") from exc
    r = _Reader(memoryview(data), name)
    version = r.u32()
    if version != 6:
        raise ModelLoadError(f"{name}: CTranslate2 model spec version {version} is not supported (need 6)")
    spec = r.string()
    r.u32()  # revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        var = r.string()
        dims = [r.u32() for _ in range(r.u8())]
        code = r.u8()
        nbytes = r.u32()
        raw = r.take(nbytes)
        if code not in _DTYPES:
            raise ModelLoadError(f"{name}: variable {var} has unsupported dtype code {code}")
        arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[code]).newbyteorder("<"))
        if arr.size != int(np.prod(dims, dtype=np.int64)):
            raise ModelLoadError(f"{name}: variable {var} holds {arr.size} values for shape {dims}")
        variables[var] = arr.reshape(dims)
    for _ in range(r.u32()):
        alias, target = r.string(), r.string()
        if target not in variables:
            raise ModelLoadError(f"{name}: alias {alias} points to missing {target}")
        variables[alias] = variables[target]
    if r.pos != len(data):
        raise ModelLoadError(f"{name}: {len(data) - r.pos} unexpected trailing bytes")
    return spec, variables

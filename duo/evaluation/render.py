"""Scenario audio, rendered at run time and the same every time: synthesized speech and package recordings.

Every sound is trimmed to its speech (so a segment's end is where the speaker stopped, which latency is
measured from) and brought to one speech level; `gain_db` and the layers mixed under it are relative to
that. Rendering is deterministic (espeak-ng, flite, Piper with its sampling noise off, fixed recordings,
soxr), so a rendered scenario can be cached on disk by the hash of its definition and carried to a machine
that has neither the synthesizers nor the recordings. Where the sounds come from is `sources.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from duo.audio.decode import SAMPLE_RATE

from .scenario import Item, Layer, PlaySound, Say, SaySound, Scenario, Silence, WaitFor
from .sources import RenderError, Sources, recording_path

__all__ = ["RATE", "RENDER_VERSION", "SPEECH_RMS", "AudioCache", "AudioPart", "Part", "RenderError", "Segment",
           "Sources", "WaitPart", "default_cache", "level", "recording_path", "render", "scenario_key", "trim"]

log = logging.getLogger(__name__)

RATE = SAMPLE_RATE
RENDER_VERSION = 1  # bump when rendering changes, so caches are rebuilt
SPEECH_RMS = 0.1  # -20 dBFS over the active frames


@dataclass(frozen=True)
class Segment:
    """Who speaks when, in seconds from the start of its part (later: of the scenario)."""

    role: str  # query, interrupt, background, pause (layers: background)
    start: float
    end: float
    label: str
    layer: bool = False

    def shifted(self, by: float) -> Segment:
        return Segment(self.role, round(self.start + by, 4), round(self.end + by, 4), self.label, self.layer)


@dataclass
class AudioPart:
    samples: np.ndarray  # float32, 16 kHz
    segments: list[Segment] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.size / RATE


@dataclass(frozen=True)
class WaitPart:
    item: WaitFor


Part = AudioPart | WaitPart


# -- sounds -------------------------------------------------------------------------------------------------
def trim(x: np.ndarray, floor_db: float = -35.0, margin_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence: frames more than `floor_db` under the loudest 10 ms frame."""
    hop = RATE // 100
    n = x.size // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(rms >= rms.max() * 10 ** (floor_db / 20))[0]
    margin = int(margin_s * RATE)
    return x[max(0, loud[0] * hop - margin) : min(x.size, (loud[-1] + 1) * hop + margin)]


def level(x: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """Scale to the speech level (RMS of frames within 30 dB of the loudest) plus `gain_db`; peaks kept < 1."""
    hop = RATE // 50
    n = x.size // hop
    if n == 0 or not np.any(x):
        return x.astype(np.float32)
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = rms[rms >= rms.max() * 10 ** (-30 / 20)]
    scale = SPEECH_RMS * 10 ** (gain_db / 20) / float(np.sqrt(np.mean(active**2)))
    scale = min(scale, 0.95 / float(np.abs(x).max()))
    return (x * scale).astype(np.float32)


# -- scenarios ----------------------------------------------------------------------------------------------
def _label(src: Layer) -> str:
    if isinstance(src, Say):
        return f"{src.say} [{src.voice}]"
    span = f" {src.start:g}-{src.end:g}s" if src.end is not None else (f" from {src.start:g}s" if src.start else "")
    return f"{src.play}{span}"


def _sound(sources: Sources, item: SaySound | PlaySound) -> tuple[np.ndarray, list[Segment]]:
    main = level(trim(sources.get(item)), item.gain_db)
    out = main.copy()
    segments = [Segment(item.role, 0.0, round(main.size / RATE, 4), _label(item))]
    for layer in item.over:
        bed = level(sources.get(layer), layer.gain_db)
        if bed.size == 0:
            continue
        bed = np.tile(bed, -(-out.size // bed.size))[: out.size]
        out += bed
        segments.append(Segment("background", 0.0, round(out.size / RATE, 4), _label(layer), layer=True))
    peak = float(np.abs(out).max()) if out.size else 0.0
    return (out * (0.95 / peak) if peak > 0.95 else out).astype(np.float32), segments


def render(scenario: Scenario, sources: Sources | None = None) -> list[Part]:
    """The scenario as audio parts separated by waits for the reply."""
    sources = sources or Sources()
    parts: list[Part] = []
    cur: list[np.ndarray] = []
    segs: list[Segment] = []
    at = 0

    def close() -> None:
        nonlocal cur, segs, at
        if cur:  # PCM16-exact, so a part read back from the cache is the same audio
            pcm = np.clip(np.round(np.concatenate(cur) * 32767), -32768, 32767)
            parts.append(AudioPart((pcm / 32767).astype(np.float32), segs))
        cur, segs, at = [], [], 0

    item: Item
    for item in scenario.timeline:
        if isinstance(item, WaitFor):
            close()
            parts.append(WaitPart(item))
            continue
        if isinstance(item, Silence):
            x = np.zeros(round(item.silence * RATE), dtype=np.float32)
            if item.role == "pause":
                segs.append(Segment("pause", round(at / RATE, 4), round((at + x.size) / RATE, 4), "pause"))
        else:
            x, item_segs = _sound(sources, item)
            segs.extend(s.shifted(at / RATE) for s in item_segs)
        cur.append(x)
        at += x.size
    close()
    return parts


def scenario_key(scenario: Scenario) -> str:
    text = json.dumps([RENDER_VERSION, scenario.model_dump(mode="json", include={"timeline"})],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "duo" / "evaluation"


class AudioCache:
    """Rendered scenarios on disk (PCM16 16 kHz, compressed), keyed by the hash of their definition."""

    def __init__(self, folder: Path | None, sources: Sources | None = None) -> None:
        self.folder = folder
        self.sources = sources or Sources()

    def path(self, scenario: Scenario) -> Path | None:
        return self.folder / f"{scenario.id}-{scenario_key(scenario)}.npz" if self.folder else None

    def parts(self, scenario: Scenario) -> list[Part]:
        path = self.path(scenario)
        if path is not None and path.is_file():
            try:
                return _read(path, scenario)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("event=audio_cache_unreadable path=%s error=%r", path, exc)
        parts = render(scenario, self.sources)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, parts)
        return parts


def _write(path: Path, parts: list[Part]) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, part in enumerate(parts):
        if isinstance(part, AudioPart):
            arrays[f"a{i}"] = np.clip(np.round(part.samples * 32767), -32768, 32767).astype(np.int16)
            meta.append([s.__dict__ for s in part.segments])
        else:
            meta.append(None)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _read(path: Path, scenario: Scenario) -> list[Part]:
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes())
        waits = iter(i for i in scenario.timeline if isinstance(i, WaitFor))
        parts: list[Part] = []
        for i, segs in enumerate(meta):
            if segs is None:
                parts.append(WaitPart(next(waits)))
            else:
                samples = data[f"a{i}"].astype(np.float32) / 32767
                parts.append(AudioPart(samples, [Segment(**s) for s in segs]))
    return parts


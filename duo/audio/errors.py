"""Typed errors of the audio front end.

Callers (the server, the CLI) catch `AudioError` and report its message to the user; nothing in `duo.audio`
should let a malformed input surface as an IndexError or a NumPy warning deep in a model call.
"""

from __future__ import annotations


class AudioError(ValueError):
    """Base class: a request the audio front end cannot serve, with a message meant for the user."""


class AudioFormatError(AudioError):
    """Input audio is malformed: odd byte count, NaN/inf samples, unsupported rate, empty, unreadable file."""


class ModelLoadError(AudioError):
    """A speech model (Whisper, VAD, TTS voice) could not be found, converted or loaded."""


class SynthesisError(AudioError):
    """Text could not be turned into speech (no backend available, backend failed)."""

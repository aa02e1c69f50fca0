"""What the audio front end hands to the rest of duo: speech events and slices, in the stream's own time.

Times are seconds since the first sample the stream received (after resampling), so they line up with the
Realtime protocol's `audio_start_ms` / `audio_end_ms`. Utterance ids count from 0 within one stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SpeechStarted:
    """The VAD heard speech begin (-> `input_audio_buffer.speech_started`)."""

    utterance_id: int
    time_s: float
    resumed: bool = False  # it follows an early close within its confirmation window: the same turn goes on


@dataclass(frozen=True)
class SpeechStopped:
    """The speaker paused for the configured pause length (-> `input_audio_buffer.speech_stopped`).

    `time_s` is where the speech ended, i.e. the start of the pause, not the moment the pause was confirmed.
    `early`: closed after the short pause the owner allowed (`Slicer.early_ok`); a `PauseConfirmed` or a
    resumed `SpeechStarted` follows.
    """

    utterance_id: int
    time_s: float
    early: bool = False


@dataclass(frozen=True)
class PauseConfirmed:
    """The silence after an early close lasted the confirmation window: the turn has ended."""

    utterance_id: int
    time_s: float


@dataclass(frozen=True, eq=False)
class AudioSlice:
    """A piece of one utterance's audio, closed by the length limit (final=False) or a pause (final=True)."""

    utterance_id: int
    index: int
    start_s: float
    end_s: float
    final: bool
    audio: np.ndarray = field(repr=False)
    partial: bool = False  # the open slice so far, to recognize provisionally (final: it ends at a pause)
    # A final slice: where its pause's own partial ended, when nothing but silence came after it (that
    # partial read every word of the slice, so its reading stands for the slice's); None otherwise.
    heard_s: float | None = None


@dataclass(frozen=True)
class TextSlice:
    """The recognized words of one slice: what the engine appends to its input channel.

    `text` holds only the words this slice adds (possibly empty: silence, noise, or a word held back because
    the slice cut it); `utterance_text` is everything recognized in the utterance so far. `final` says the user
    paused (end of utterance) rather than the 2 s limit closing the slice while they were still speaking.
    """

    utterance_id: int
    index: int
    start_s: float
    end_s: float
    final: bool
    text: str
    utterance_text: str
    no_speech_prob: float
    language: str | None = None
    partial: bool = False  # provisional: the words of the open slice so far, which the slice itself replaces


Event = SpeechStarted | SpeechStopped | PauseConfirmed | AudioSlice
"""What `Slicer.push` returns, in time order."""

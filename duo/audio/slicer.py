"""Streaming slicer: cuts a 16 kHz stream into slices of one utterance, closed at a length limit or a pause.

Each 32 ms frame gets a Silero speech probability. Idle, a run of speech frames starts an utterance (with a
little pre-roll so the onset is not clipped). Speaking, frames accumulate into the current slice, which
closes as non-final when it reaches `slice_s` (not inside a pause while partials are taken: the limit bounds
speech, the pause's partial hears the words, and a pause that turns into speech again closes it at once), or
as final when the speaker has been
silent for `pause_s`, or already after `early_pause_s` while the owner says the words are complete
(`early_ok`, DUO's `process`): then speech within `confirm_s` of the pause's start resumes the same turn, and
silence confirms it.
`partial` hands out the open slice so far for provisional recognition (a final slice says, in `heard_s`, where
its pause's partial ended when only silence followed it); `onset_s` tells a run of speech frames that has not
yet lasted `min_speech_s`.
Hysteresis as in Silero's own iterator: a pause starts below `threshold - 0.15` and only a frame above
`threshold` cancels it. Silence outside an utterance produces nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from duo.audio.decode import SAMPLE_RATE
from duo.audio.errors import AudioError, AudioFormatError
from duo.audio.events import AudioSlice, Event, PauseConfirmed, SpeechStarted, SpeechStopped
from duo.audio.vad import FRAME, SileroVad, VadState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlicerConfig:
    """Slice length, pause length and VAD thresholds (seconds and probabilities)."""

    slice_s: float = 2.0
    pause_s: float = 0.3
    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_s: float = 0.064
    pre_roll_s: float = 0.2
    early_pause_s: float | None = None  # the short pause that closes speech judged complete (`early_ok`)
    confirm_s: float | None = None  # silence after an early close that ends the turn (default `pause_s`)

    def __post_init__(self) -> None:
        if not 0.5 <= self.slice_s <= 4.0:
            raise AudioError(f"slice_s must be within 0.5..4.0 s, got {self.slice_s}")
        if not 0.05 <= self.pause_s <= 3.0:
            raise AudioError(f"pause_s must be within 0.05..3.0 s, got {self.pause_s}")
        if not 0.0 < self.threshold < 1.0:
            raise AudioError(f"threshold must be within (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 < self.neg_threshold <= self.threshold:
            raise AudioError(f"neg_threshold must be within (0, threshold], got {self.neg_threshold}")
        if not 0.0 <= self.min_speech_s <= 1.0 or not 0.0 <= self.pre_roll_s <= 1.0:
            raise AudioError("min_speech_s and pre_roll_s must be within 0..1 s")
        if self.early_pause_s is not None and not 0.05 <= self.early_pause_s <= self.pause_s:
            raise AudioError(f"early_pause_s must be within 0.05..pause_s s, got {self.early_pause_s}")
        if self.confirm_s is not None and not (self.early_pause_s or 0.05) <= self.confirm_s <= 3.0:
            raise AudioError(f"confirm_s must be within early_pause_s..3.0 s, got {self.confirm_s}")

    @property
    def confirm(self) -> float:
        return self.confirm_s if self.confirm_s is not None else self.pause_s

    @property
    def low(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(0.01, self.threshold - 0.15)


class Slicer:
    """One stream's slicer. Feed it 16 kHz float32 with `push`; it returns events in time order."""

    def __init__(self, config: SlicerConfig | None = None, vad: SileroVad | None = None) -> None:
        self.config = config or SlicerConfig()
        self.vad = vad or SileroVad.shared()
        self.vad_state = VadState()
        self._pending = np.zeros(0, dtype=np.float32)  # < one frame, not yet judged
        self._frames = 0  # frames judged so far
        self._history = np.zeros(0, dtype=np.float32)  # idle: recent audio for pre-roll
        self._speech_run = 0
        self._speaking = False
        self._utterance = -1
        self._index = 0
        self._slice: list[np.ndarray] = []
        self._slice_start = 0  # in samples
        self._silence_start: int | None = None  # sample where the current pause began
        self._min_frames = max(1, round(self.config.min_speech_s * SAMPLE_RATE / FRAME))
        self.early_ok = False  # the owner's newest judgement of the words: complete (the short pause ends them)
        self._tentative: int | None = None  # after an early close: the sample where its pause began
        self._partial_at = 0  # sample of the open slice's newest partial
        self._paused_partial = False  # the current pause has had its partial (only silence since: reset by speech)
        self._partials = False  # the owner takes partials (`partial` with an interval): a pause's partial will come
        self._pre_roll = int(self.config.pre_roll_s * SAMPLE_RATE)

    @property
    def time_s(self) -> float:
        """Stream time of the audio judged so far."""
        return self._frames * FRAME / SAMPLE_RATE

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def onset_s(self) -> float | None:
        """Idle, with frames above the threshold that may yet become speech: where they began. The owner may
        act on it at once (duck a reply) and undo it if the run breaks before `min_speech_s`."""
        if self._speaking or not self._speech_run:
            return None
        return (self._frames - self._speech_run) * FRAME / SAMPLE_RATE

    def take_frames(self, samples: np.ndarray) -> np.ndarray:
        """Append samples and return the whole frames now ready, shape (n, 512); keeps the remainder."""
        arr = np.asarray(samples)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
            raise AudioFormatError(f"slicer needs 1-D float samples at 16 kHz, got {arr.dtype} {arr.shape}")
        if arr.size and not np.isfinite(arr).all():
            raise AudioFormatError("audio contains NaN or infinite samples")
        buf = np.concatenate([self._pending, arr.astype(np.float32, copy=False)])
        n = buf.size // FRAME
        self._pending = buf[n * FRAME :]
        return buf[: n * FRAME].reshape(n, FRAME)

    def push(self, samples: np.ndarray) -> list[Event]:
        """Feed 16 kHz mono float32 samples of any length; returns the events they complete."""
        frames = self.take_frames(samples)
        if not len(frames):
            return []
        return self.advance_all(frames, self.vad.frame_probs(frames.reshape(-1), self.vad_state))

    def advance_all(self, frames: np.ndarray, probs: np.ndarray) -> list[Event]:
        """Consume frames judged elsewhere (`push_batch`, the server's `VadBatcher`), in order."""
        events: list[Event] = []
        for frame, prob in zip(frames, probs, strict=True):
            events.extend(self.advance(frame, float(prob)))
        return events

    def advance(self, frame: np.ndarray, prob: float) -> list[Event]:
        """Consume one judged frame."""
        cfg = self.config
        start = self._frames * FRAME
        self._frames += 1
        now = self._frames * FRAME
        if not self._speaking:
            self._history = np.concatenate([self._history, frame])[-(self._pre_roll + FRAME * self._min_frames) :]
            self._speech_run = self._speech_run + 1 if prob >= cfg.threshold else 0
            onset = now - self._speech_run * FRAME
            confirmed: list[Event] = []
            if self._tentative is not None and onset - self._tentative >= cfg.confirm * SAMPLE_RATE:
                confirmed = [PauseConfirmed(self._utterance, self._tentative / SAMPLE_RATE)]
                self._tentative = None
            if self._speech_run < self._min_frames:
                return confirmed
            resumed, self._tentative = self._tentative is not None, None
            self._speaking, self._utterance, self._index = True, self._utterance + 1, 0
            self._silence_start, self._partial_at, self._paused_partial = None, 0, False
            kept = self._history[-min(self._history.size, now - onset + self._pre_roll) :]
            self._slice, self._slice_start = [kept], now - kept.size
            log.debug("speech_started utterance=%d t=%.3f resumed=%s", self._utterance, onset / SAMPLE_RATE,
                      resumed)
            return [*confirmed, SpeechStarted(self._utterance, onset / SAMPLE_RATE, resumed)]
        self._slice.append(frame)
        if prob >= cfg.threshold:
            self._silence_start, self._paused_partial = None, False
        elif prob < cfg.low and self._silence_start is None:
            self._silence_start = start
        if self._silence_start is not None:
            silent = now - self._silence_start
            if silent >= cfg.pause_s * SAMPLE_RATE:
                return self._close(final=True)
            if self.early_ok and cfg.early_pause_s is not None and silent >= cfg.early_pause_s * SAMPLE_RATE:
                return self._close(final=True, early=True)
        # The limit bounds new speech: with partials a pause is not cut, also before its partial is taken (in
        # the same chunk), since the slice it would leave holds only silence and the partial hears every word;
        # speech resuming past the limit closes the slice at once. Without partials the cut is what gets the
        # words recognized before the pause ends.
        in_heard_pause = self._partials and self._silence_start is not None
        if not in_heard_pause and now - self._slice_start >= cfg.slice_s * SAMPLE_RATE - FRAME / 2:
            return self._close(final=False)
        return []

    def partial(self, every_s: float) -> AudioSlice | None:
        """The open slice so far, to recognize provisionally: every `every_s` of speech, and once as each
        pause begins (`final`: no word is cut there), none while it lasts. None when none is due; `every_s`
        <= 0: never."""
        self._partials = every_s > 0
        if not self._speaking or every_s <= 0:
            return None
        now = self._frames * FRAME
        if self._paused_partial:
            return None  # the pause's partial heard every word; what came since is silence
        at_pause = self._silence_start is not None
        if not at_pause and now - max(self._partial_at, self._slice_start) < every_s * SAMPLE_RATE:
            return None
        self._partial_at, self._paused_partial = now, at_pause
        audio = np.concatenate(self._slice) if self._slice else np.zeros(0, dtype=np.float32)
        return AudioSlice(self._utterance, self._index, self._slice_start / SAMPLE_RATE, now / SAMPLE_RATE,
                          at_pause, audio, partial=True)

    def _close(self, final: bool, early: bool = False, heard: bool = True) -> list[Event]:
        now = self._frames * FRAME
        audio = np.concatenate(self._slice) if self._slice else np.zeros(0, dtype=np.float32)
        # No frame reached the threshold since the pause's partial of this slice (speech resets
        # `_paused_partial`): it heard every word.
        covered = final and heard and self._paused_partial and self._partial_at > self._slice_start
        piece = AudioSlice(self._utterance, self._index, self._slice_start / SAMPLE_RATE, now / SAMPLE_RATE, final,
                           audio, heard_s=self._partial_at / SAMPLE_RATE if covered else None)
        log.debug("slice utterance=%d index=%d final=%s end=%.3f", self._utterance, self._index, final,
                  now / SAMPLE_RATE)
        self._slice, self._slice_start, self._index = [], now, self._index + 1
        self._partial_at = now
        if not final:
            return [piece]
        stop = self._silence_start if self._silence_start is not None else now
        self._speaking, self._speech_run, self._history = False, 0, np.zeros(0, dtype=np.float32)
        self._tentative = stop if early else None
        return [SpeechStopped(self._utterance, stop / SAMPLE_RATE, early), piece]

    def flush(self) -> list[Event]:
        """End of input (stream closed or buffer committed): close the open utterance as final."""
        if not self._speaking:
            self._pending = np.zeros(0, dtype=np.float32)
            return []
        if self._pending.size:  # the sub-frame tail still belongs to the utterance (unjudged: it may be speech)
            self._slice.append(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        return self._close(final=True, heard=False)

    def clear(self) -> None:
        """Drop the open utterance without a slice (the client cleared its input buffer)."""
        self._speaking, self._speech_run, self._slice, self._tentative = False, 0, [], None
        self._pending, self._history = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
        self._slice_start = self._frames * FRAME


def push_batch(slicers: Sequence[Slicer], chunks: Sequence[np.ndarray]) -> list[list[Event]]:
    """Advance several streams at once, judging frame k of every stream in one batched VAD call."""
    if len(slicers) != len(chunks):
        raise AudioError("push_batch needs one chunk per slicer")
    if not slicers:
        return []
    frames = [s.take_frames(c) for s, c in zip(slicers, chunks, strict=True)]
    probs = slicers[0].vad.judge(frames, [s.vad_state for s in slicers])
    return [s.advance_all(f, p) for s, f, p in zip(slicers, frames, probs, strict=True)]

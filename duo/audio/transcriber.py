"""Slices of audio -> slices of text, one utterance at a time, with the utterance so far as context.

Design (re-decode the open utterance with a forced prefix): for every slice, Whisper decodes the audio of the
utterance so far (one 30 s encoder window costs the same for 2 s or 20 s of audio) with the words already
handed out forced as the decoder's prefix, and only the continuation is new. A word the 2 s cut split in two
is not committed: a non-final slice holds back its last word, which the next slice re-decodes from the whole
audio. A partial (the open slice so far) is decoded the same way and commits nothing. A final
(pause-closed) slice commits everything. Past `max_window_s` the window restarts at the previous slice
and older text moves to the `<|startofprev|>` prompt. The stream's previous decode in the utterance is the
draft of the next (`asr.py`): a final or a partial of words a partial already decoded costs a step or two,
not one step a token, and comes out exactly as without it; a final slice whose pause's partial heard every word
(`AudioSlice.heard_s`: only silence after it) takes that partial's reading with no decode at all, so the end of
a turn does not wait for recognition. New text is dropped when Whisper itself judges the
window to be no speech: no-speech probability high and mean log-probability low (Whisper's own rule), or
no-speech probability very high on its own (Whisper's confident " you" on silence passes the first rule).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from duo.audio.asr import DecodeRequest, DecodeResult, Recognizer
from duo.audio.decode import SAMPLE_RATE
from duo.audio.errors import AudioError
from duo.audio.events import AudioSlice, TextSlice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscriberConfig:
    """Context window, silence gate and hold-back policy (see the module docstring)."""

    language: str | None = "en"  # multilingual models only; None detects it per utterance
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    no_speech_alone: float = 0.85  # this sure, it is silence even if the words look confident ("you")
    hold_back_last_word: bool = True
    max_window_s: float = 24.0
    tokens_per_second: float = 8.0

    def __post_init__(self) -> None:
        if not 4.0 <= self.max_window_s <= 28.0:
            raise AudioError(f"max_window_s must be within 4..28 s, got {self.max_window_s}")


@dataclass
class _Utterance:
    uid: int
    audio: list[np.ndarray] = field(default_factory=list)  # per slice
    commits: list[list[int]] = field(default_factory=list)  # tokens committed by each slice
    window_first: int = 0
    language: str | None = None


class StreamTranscriber:
    """One stream's recognition state. Use `transcribe` alone, or `transcribe_batch` across streams."""

    def __init__(self, recognizer: Recognizer, config: TranscriberConfig | None = None) -> None:
        self.recognizer = recognizer
        self.config = config or TranscriberConfig()
        self._utt: _Utterance | None = None
        self._expect: tuple[int, int] | None = None
        self._prefix: list[int] = []  # the forced prefix of the request in flight
        self._decoded: tuple[int, list[int]] | None = None  # (utterance, prefix + new tokens) of the last decode
        # The newest partial decoded at a pause: ((utterance, slice, end), its forced prefix, its result).
        self._paused: tuple[tuple[int, int, float], list[int], DecodeResult] | None = None

    def transcribe(self, piece: AudioSlice) -> TextSlice:
        return transcribe_batch([(self, piece)])[0]

    def prepare(self, piece: AudioSlice) -> DecodeRequest:
        """Add the slice's audio to the open utterance and build the request that decodes it."""
        cfg = self.config
        if self._utt is None or self._utt.uid != piece.utterance_id:
            self._utt = _Utterance(piece.utterance_id, language=cfg.language)
        utt = self._utt
        if piece.index != len(utt.audio):
            raise AudioError(f"slice {piece.index} of utterance {piece.utterance_id} arrived out of order")
        if piece.partial:  # decoded like the slice it will become, committing nothing
            self._expect = (piece.utterance_id, piece.index)
            return self._request(utt, [*utt.audio, np.asarray(piece.audio, dtype=np.float32)], utt.commits,
                                 piece.audio.size)
        self._append(utt, piece)
        return self._request(utt, utt.audio, utt.commits[:-1], piece.audio.size)

    def reuse(self, piece: AudioSlice) -> TextSlice | None:
        """The final slice's text from its pause's partial, if that partial heard all its speech and decoded
        the same window (what decoding the slice would verify in one pass); None: decode the slice."""
        saved, utt = self._paused, self._utt
        if (saved is None or piece.partial or piece.heard_s is None or utt is None
                or saved[0] != (piece.utterance_id, piece.index, piece.heard_s) or piece.index != len(utt.audio)):
            return None
        window = sum(a.size for a in utt.audio[utt.window_first :]) + piece.audio.size
        if window > self.config.max_window_s * SAMPLE_RATE:  # the slice would move the window: decode it
            return None
        self._append(utt, piece)
        self._prefix = saved[1]
        return self.finish(piece, saved[2])

    def _append(self, utt: _Utterance, piece: AudioSlice) -> None:
        """Add a slice to the utterance, moving the window on past `max_window_s`."""
        utt.audio.append(np.asarray(piece.audio, dtype=np.float32))
        utt.commits.append([])
        while sum(a.size for a in utt.audio[utt.window_first :]) > self.config.max_window_s * SAMPLE_RATE:
            utt.window_first = min(len(utt.audio) - 1, max(utt.window_first + 1, len(utt.audio) - 2))
            if utt.window_first == len(utt.audio) - 1:
                break
        self._expect = (piece.utterance_id, piece.index)

    def _request(self, utt: _Utterance, audio: list[np.ndarray], commits: list[list[int]], new: int) -> DecodeRequest:
        """Decode the window's audio with its committed words forced as the prefix, older ones as prompt."""
        window = np.concatenate(audio[utt.window_first :])[-int(28 * SAMPLE_RATE) :]
        if window.size < SAMPLE_RATE // 10:  # too short for a spectrogram worth decoding: pad with silence
            window = np.pad(window, (0, SAMPLE_RATE // 10 - window.size))
        prefix = [t for c in commits[utt.window_first :] for t in c]
        prompt = [t for c in commits[: utt.window_first] for t in c]
        new_s = new / SAMPLE_RATE + 1.0  # the held-back word's audio is in the earlier slice
        budget = int(12 + self.config.tokens_per_second * new_s)
        self._prefix = prefix
        return DecodeRequest(window, prefix, prompt, utt.language, budget, self._draft(utt.uid, prefix))

    def _draft(self, uid: int, prefix: list[int]) -> list[int]:
        """What the last decode of this utterance said after `prefix`, if it was decoded with that prefix."""
        if self._decoded is None or self._decoded[0] != uid:
            return []
        said = self._decoded[1]
        return said[len(prefix) :] if said[: len(prefix)] == prefix else []

    def finish(self, piece: AudioSlice, result: DecodeResult) -> TextSlice:
        """Commit the words of a decoded slice and produce its text slice."""
        utt = self._utt
        if utt is None or self._expect != (piece.utterance_id, piece.index):
            raise AudioError("finish() must follow prepare() for the same slice")
        cfg, tok = self.config, self.recognizer.whisper.tokenizer
        utt.language = utt.language or result.language
        new = list(result.tokens)
        self._decoded = (utt.uid, [*self._prefix, *new])
        self._paused = ((utt.uid, piece.index, piece.end_s), self._prefix, result) if piece.partial and piece.final \
            else None
        ns = result.no_speech_prob
        unsure = ns > cfg.no_speech_threshold and result.avg_logprob < cfg.logprob_threshold
        silent = unsure or ns > cfg.no_speech_alone
        if silent:
            new = []
        elif not piece.final and cfg.hold_back_last_word:
            new = new[: _last_word_start(tok, new)]
        if piece.partial:
            before = [t for c in utt.commits for t in c]
        else:
            utt.commits[-1] = new
            before = [t for c in utt.commits[:-1] for t in c]
        text = self.recognizer.text(new).strip()
        full = self.recognizer.text(before + new).strip()
        log.debug("slice_text utterance=%d index=%d final=%s no_speech=%.2f silent=%s words=%d",
                  piece.utterance_id, piece.index, piece.final, result.no_speech_prob, silent, len(text.split()))
        if piece.final and not piece.partial:
            self._utt = None
        self._expect = None
        return TextSlice(piece.utterance_id, piece.index, piece.start_s, piece.end_s, piece.final, text, full,
                         result.no_speech_prob, utt.language, piece.partial)


def _last_word_start(tokenizer, tokens: list[int]) -> int:
    """Index of the token that begins the last word (a token whose text starts with a space)."""
    pieces = tokenizer.convert_ids_to_tokens(tokens)
    for i in range(len(pieces) - 1, -1, -1):
        if pieces[i].startswith(("Ġ", " ")):
            return i
    return 0


def transcribe_batch(items: Sequence[tuple[StreamTranscriber, AudioSlice]]) -> list[TextSlice]:
    """Recognize slices of many streams with one batched decode per round (a stream's slices run in order)."""
    if not items:
        return []
    recognizer = items[0][0].recognizer
    if any(t.recognizer is not recognizer for t, _ in items):
        raise AudioError("transcribe_batch needs transcribers that share one recognizer")
    rounds: dict[int, list[int]] = defaultdict(list)
    seen: dict[int, int] = defaultdict(int)
    for i, (t, _) in enumerate(items):
        rounds[seen[id(t)]].append(i)
        seen[id(t)] += 1
    out: list[TextSlice | None] = [None] * len(items)
    for r in sorted(rounds):
        idx = []
        for i in rounds[r]:
            if (text := items[i][0].reuse(items[i][1])) is not None:
                out[i] = text
            else:
                idx.append(i)
        requests = [items[i][0].prepare(items[i][1]) for i in idx]
        for i, result in zip(idx, recognizer.decode(requests), strict=True):
            out[i] = items[i][0].finish(items[i][1], result)
    return [o for o in out if o is not None]

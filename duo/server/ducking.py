"""Ducking: speech over a reply being spoken lowers its volume on the client while DUO judges the speech.

At the speech's first frame the client is told `duo.output_audio.duck` (duo-aware sessions; standard
clients hear nothing until a `process` stops the reply); when the judgement says the reply goes on
(`ignore`, or the speech ended unfinished), the reply stops, or the frames stopped before they were speech
(a click, a cough: `not_speech`), `duo.output_audio.restore` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from . import server_events as se
from .metrics import Metrics
from .speech_out import SpeechOut

Reason = Literal["ignore", "incomplete", "interrupted", "not_speech"]


class Ducking:
    def __init__(self, send: Callable[[se.ServerEvent], None], voice: SpeechOut, metrics: Metrics) -> None:
        self.send, self.voice, self.metrics = send, voice, metrics
        self.ducked = False
        self.provisional = False  # ducked at an onset that is not speech yet
        self.events = False  # the session asked for `duo.*` events

    def duck(self, audio_ms: int, at: float, provisional: bool = False) -> None:
        """Speech began at `at` (monotonic) over the reply being spoken (`provisional`: its first frames)."""
        if self.ducked:
            self.provisional = self.provisional and provisional
            return
        self.ducked, self.provisional = True, provisional
        if self.events:
            self.send(se.DuoDuck(response_id=self._speaking(), audio_start_ms=audio_ms))
        self.metrics.duck_latency.observe(max(0.0, time.monotonic() - at))

    def dropped(self) -> None:
        """The onset it ducked for did not become speech."""
        if self.ducked and self.provisional:
            self.restore("not_speech")

    def restore(self, reason: Reason) -> None:
        if not self.ducked:
            return
        self.ducked = self.provisional = False
        if self.events:
            self.send(se.DuoRestore(response_id=self._speaking(), reason=reason))

    def _speaking(self) -> str | None:
        playback = self.voice.speaking
        return playback.response_id if playback is not None else None

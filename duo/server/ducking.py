"""Ducking: speech over a reply being spoken lowers its volume on the client while DUO judges the speech.

At the speech's onset the client is told `duo.output_audio.duck` (duo-aware sessions; standard clients hear
nothing until a `process` stops the reply); when the judgement says the reply goes on (`ignore`, or the
speech ended unfinished) or the reply stops, `duo.output_audio.restore` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from . import server_events as se
from .metrics import Metrics
from .speech_out import SpeechOut

Reason = Literal["ignore", "incomplete", "interrupted"]


class Ducking:
    def __init__(self, send: Callable[[se.ServerEvent], None], voice: SpeechOut, metrics: Metrics) -> None:
        self.send, self.voice, self.metrics = send, voice, metrics
        self.ducked = False
        self.events = False  # the session asked for `duo.*` events

    def duck(self, audio_ms: int, at: float) -> None:
        """Speech began at `at` (monotonic) over the reply being spoken."""
        if self.ducked:
            return
        self.ducked = True
        if self.events:
            self.send(se.DuoDuck(response_id=self._speaking(), audio_start_ms=audio_ms))
        self.metrics.duck_latency.observe(max(0.0, time.monotonic() - at))

    def restore(self, reason: Reason) -> None:
        if not self.ducked:
            return
        self.ducked = False
        if self.events:
            self.send(se.DuoRestore(response_id=self._speaking(), reason=reason))

    def _speaking(self) -> str | None:
        playback = self.voice.speaking
        return playback.response_id if playback is not None else None

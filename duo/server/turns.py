"""Turn taking: when the user's speech opens an input, stops a reply, or is answered.

DUO's judgement answers on `process` (at the speaker's pause unless `act_before_pause`); `server_vad`
answers every pause and lets any speech stop a reply; an utterance judged unfinished is answered after
`incomplete_timeout_ms` of silence (never speech that began over a reply); the client answers when it asks.
This object is the microphone's `Ears` (`speech_in.py`); what standard clients are told of the input is
`user_input.py`'s, the replies `responses.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from duo.engine import SessionHandle
from duo.engine import events as ev

from . import protocol as p
from .metrics import Metrics
from .options import SessionOptions
from .responses import Responses
from .user_input import UserInput

log = logging.getLogger(__name__)


class Turns:
    def __init__(self, session_id: str, handle: SessionHandle, options: SessionOptions, user: UserInput,
                 responses: Responses, metrics: Metrics) -> None:
        self.id, self.handle, self.options = session_id, handle, options  # the owner keeps both current
        self.user, self.responses, self.metrics = user, responses, metrics
        self.last_state = ""  # the newest DUO decision on the input being heard
        self.ended = False  # the user's utterance ended at a pause
        self.over_reply = False  # the utterance began while a reply was running
        self.unfinished: asyncio.TimerHandle | None = None  # answers an `incomplete` utterance after a silence

    def judged_as(self, event: ev.StateDecided) -> None:
        """DUO's judgement of the input: `process` makes it a user turn, `ignore` drops it unseen."""
        if event.state == "ignore":
            self.responses.barge_start = 0.0  # speech meant for someone else is no barge-in
            self.user.drop()
        elif event.state == "process":
            self.user.announce()  # addressed to duo: now standard clients hear of it
        self.last_state = str(event.state)
        self.wait_for_more()

    @property
    def judged(self) -> bool:
        """DUO judges the input, and answers it on `process`."""
        return self.options.duo is not None and self.options.duo.create_response

    def heard(self, text: str, final: bool) -> None:
        """A slice of the user's words (typed, or recognized from speech) goes to the engine."""
        if final:
            self.responses.end_of_input = time.monotonic()
        self.stop_waiting()
        self.ended = final
        committed = self.user.item is not None and self.user.item.committed
        self.handle.push_slice(text, final, judge=self.judged and not committed)

    def paused(self) -> None:
        """The speaker paused after a slice cut by the length limit: the utterance has ended."""
        self.ended = True
        self.handle.pause()
        self.wait_for_more()

    def answer_now(self, request: str | None = None) -> None:
        """Answer the input heard so far without a `process` decision; the reply consumes that input."""
        self.stop_waiting()
        self.handle.respond(request)
        self.last_state = ""

    # -- the microphone (SpeechIn's ears) --------------------------------------------------------------
    def speech_started(self, audio_ms: int) -> None:
        self.stop_waiting()
        self.ended = False
        self.begin_input(spoken=True)
        self.user.speech_started(audio_ms)
        td = self.options.turn_detection
        if isinstance(td, p.ServerVadTurnDetection):
            self.user.announce()  # the baseline: any speech is a turn
        if self.responses.busy:
            self.responses.barge_start = time.monotonic()
            if isinstance(td, p.ServerVadTurnDetection) and td.interrupt_response:
                self.responses.stop_speaking("turn_detected")  # the baseline: any speech stops the reply
                self.cancel("turn_detected")

    def speech_stopped(self, audio_ms: int) -> None:
        self.responses.end_of_input = time.monotonic()
        self.user.speech_stopped(audio_ms)

    def recognized(self, text: Any) -> None:
        """A recognized slice: shown as transcription, then heard (or, empty at a pause, the pause itself)."""
        self.user.heard(text.text, text.final, spoken=True, seconds=text.end_s - text.start_s)
        if text.text:
            self.heard(text.text, text.final)
        elif text.final:
            self.paused()
        td = self.options.turn_detection
        if text.final and isinstance(td, p.ServerVadTurnDetection) and td.create_response and text.utterance_text:
            self.answer_now()

    def begin_input(self, spoken: bool) -> None:
        """A new user input item starts unless one is open; remembers whether it began over a reply."""
        if self.user.item is None:
            self.user.open(spoken)
            self.over_reply = self.responses.busy
            if self.over_reply:
                self.responses.barge_start = time.monotonic()

    def wait_for_more(self) -> None:
        """An ended utterance judged unfinished: the user may go on; if they stay silent, answer it.

        Not for speech that began over a reply: never judged `process`, it is more often someone else talking
        than a request, and it leaves the reply running as it did while being heard.
        """
        duo = self.options.duo
        if not (self.ended and self.last_state == "incomplete") or self.over_reply or self.unfinished is not None:
            return
        if duo is not None and duo.params.incomplete_timeout_ms is not None:
            self.unfinished = asyncio.get_running_loop().call_later(duo.params.incomplete_timeout_ms / 1000,
                                                                    self._answer_unfinished)

    def _answer_unfinished(self) -> None:
        self.unfinished = None
        if self.ended and self.last_state == "incomplete" and self.user.item is not None:
            log.info("session=%s event=incomplete_timeout item=%s", self.id, self.user.item.id)
            self.metrics.incomplete_timeouts.inc()
            self.answer_now()

    def stop_waiting(self) -> None:
        if self.unfinished is not None:
            self.unfinished.cancel()
            self.unfinished = None

    def cancel(self, reason: str) -> None:
        if self.responses.reply is not None:
            self.responses.reply.cancel_reason = reason
        self.handle.cancel()


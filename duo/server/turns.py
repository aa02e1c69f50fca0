"""Turn taking: when the user's speech opens an input, stops a reply, or is answered.

DUO's judgement answers on `process` (at the speaker's pause unless `act_before_pause`); `server_vad`
answers every pause and lets any speech stop a reply; an utterance judged unfinished is answered after
`incomplete_timeout_ms` of silence (never speech that began over a reply); the client answers when it asks.
Under DUO, speech judged `process` ends after the short `early_pause_ms`, and a reply DUO starts before the
turn is confirmed (early, or speculatively on a partial transcript) is held unheard (`held.py`) until the
silence lasts `confirm_ms` and the final words are the ones it answered; the user going on withdraws it.
Speech over a reply ducks it (`duo.output_audio.duck`) while DUO judges; `process` stops it, `ignore`
restores it. This object is the microphone's `Ears` (`speech_in.py`); what standard clients are told of the
input is `user_input.py`'s, the replies `responses.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from duo.engine import SessionHandle
from duo.engine import events as ev

from . import protocol as p
from .ducking import Ducking
from .held import Held, Release
from .metrics import Metrics
from .options import SessionOptions
from .responses import Responses
from .user_input import UserInput

log = logging.getLogger(__name__)


class Turns:
    def __init__(self, session_id: str, handle: SessionHandle, options: SessionOptions, user: UserInput,
                 responses: Responses, metrics: Metrics, complete: Callable[[bool], None]) -> None:
        self.id, self.handle, self.options = session_id, handle, options  # the owner keeps both current
        self.user, self.responses, self.metrics = user, responses, metrics
        self.complete = complete  # tells the microphone whether the newest judgement is `process`
        self.held = Held(on_drop=responses.voice.drop)  # a withdrawn reply's audio, spoken ahead, is cancelled
        self.last_state = ""  # the newest DUO decision on the input being heard
        self.ended = False  # the user's utterance ended at a pause
        self.over_reply = False  # the utterance began while a reply was running
        self.unfinished: asyncio.TimerHandle | None = None  # answers an `incomplete` utterance after a silence
        self.provisional: str | None = None  # the partial transcript the engine holds as the input's tail
        self.answered: str | None = None  # final words not sent on: the held reply answered them as a partial
        self.confirmed = self.words_final = True  # the silence confirmed the turn; its last words are recognized
        self.early_ms: int | None = None  # where the speech ended, after an early close not yet confirmed
        self.may_answer = False  # judged words of the unconfirmed turn went to the engine: a reply may be coming
        self.open_utterances = 0  # heard but their final slice not yet recognized
        self.ducking = Ducking(user.send, responses.voice, metrics)
        self.restore = self.ducking.restore

    def judged_as(self, event: ev.StateDecided) -> None:
        """DUO's judgement of the input: `process` makes it a user turn, `ignore` drops it unseen."""
        if event.state == "ignore":
            self.responses.barge_start = 0.0  # speech meant for someone else is no barge-in
            self.user.drop()
            self.provisional = None  # the engine let go of the words, partial ones too
            self.restore("ignore")
        elif event.state == "process":
            self.user.announce()  # addressed to duo: now standard clients hear of it
            if self.over_reply and event.held and self.responses.busy and self._interrupts:
                self.stop_reply()  # a barge-in: silence the reply now; the answer starts at the pause
        elif self.ended:
            self.restore("incomplete")
        self.last_state = str(event.state)
        self.complete(event.state == "process")
        self.wait_for_more()

    @property
    def _interrupts(self) -> bool:
        td = self.options.turn_detection
        return td is None or td.interrupt_response

    @property
    def holding(self) -> bool:
        """Replies DUO starts now wait unheard: the user's turn is not confirmed yet."""
        duo = self.options.duo
        if duo is None or not self.judged or duo.params.act_before_pause:
            return False
        early = duo.params.speculate or duo.params.early_pause_ms is not None
        return early and not (self.confirmed and self.words_final)

    def holds(self, started: ev.ResponseStarted) -> bool:
        """Whether a reply that starts now is held (DUO's own, before the turn is confirmed)."""
        if started.request is None and self.holding:
            self.held.hold(started)
            return True
        return False

    def stop_reply(self) -> None:
        """Silence the reply: its audio stops, and its generation if it is still running (`reply`; with only
        its audio left, the engine's running reply may already be the one that answers)."""
        generating = self.responses.reply is not None
        self.responses.stop_speaking("turn_detected")
        if generating:
            self.cancel("turn_detected")
        self.restore("interrupted")

    @property
    def judged(self) -> bool:
        """DUO judges the input, and answers it on `process`."""
        return self.options.duo is not None and self.options.duo.create_response

    def heard(self, text: str, final: bool, partial: bool = False, spoken: bool = False) -> None:
        """A slice of the user's words (typed, or recognized from speech) goes to the engine; a partial
        replaces the provisional words it holds, unless it reads the same."""
        text = text.strip()
        if final and not spoken:
            self.responses.end_of_input = time.monotonic()
        before = self.provisional
        same = before is not None and text == before
        if partial and same:
            return
        self.stop_waiting()
        self.ended = final and not partial
        judge = self.judged and not (self.user.item is not None and self.user.item.committed)
        self.provisional = text if partial else None
        if final and self.held.holding and (same or not text):
            self.answered = before  # the held reply answered these very words (or no more came): it stands
        else:
            self.withdraw()  # words it did not answer: a held reply is moot
            self.handle.push_slice(text, final and not partial, judge=judge, partial=partial)
            self.may_answer = self.may_answer or (judge and self.holding)
            if same and final:
                self.judgement_stands()
        if not spoken:
            self.confirmed = self.words_final = final
            self.release()

    def paused(self) -> None:
        """The speaker paused after a slice cut by the length limit: the utterance has ended."""
        self.ended = True
        if self.provisional is not None:  # the partial's words were not in the final slice after all
            self.withdraw()
            self.provisional = None
            self.handle.push_slice("", True)
        else:
            self.handle.pause()
        self.wait_for_more()

    def judgement_stands(self) -> None:
        """The final words are the provisional ones: their judgement holds for the ended utterance."""
        if self.last_state == "incomplete":
            self.restore("incomplete")
        self.wait_for_more()

    def withdraw(self) -> None:
        """The user went on: a reply to the unconfirmed turn (held, or still on its way from the engine) is
        taken back unheard, and the words stay the input."""
        if not self.may_answer:  # stays set until the turn is confirmed: a judgement may still be in flight
            return
        if (rid := self.held.withdraw()) is not None:
            log.info("session=%s event=withdraw response=%s", self.id, rid)
        self.handle.withdraw()  # the engine's newest promotion, if it is this turn's
        if self.answered is not None:  # the input's provisional tail becomes the settled words it was
            self.handle.push_slice(self.answered, False, judge=False)
            self.answered = None

    def release(self) -> None:
        """The turn is confirmed and its words are final: what is held goes out (behind the engine's queue)."""
        if self.confirmed and self.words_final:
            self.may_answer, self.answered = False, None
            if self.held.holding:
                self.handle.events.put_nowait(Release(self.id))

    def answer_now(self, request: str | None = None) -> None:
        """Answer the input heard so far without a `process` decision; the reply consumes that input."""
        self.stop_waiting()
        self.handle.respond(request)
        self.last_state = ""

    # -- the microphone (SpeechIn's ears) --------------------------------------------------------------
    @property
    def ducks(self) -> bool:
        """Speech now would duck the reply: DUO judges it, and a reply is being spoken."""
        return self.judged and self.responses.busy and self.responses.voice.speaking is not None

    def speech_onset(self, audio_ms: int, at: float) -> None:
        """The first frames of what may be speech, over a reply being spoken: duck it now, not a frame later."""
        if self.ducks:
            self.ducking.duck(audio_ms, at, provisional=True)

    def onset_dropped(self) -> None:
        self.ducking.dropped()

    def speech_started(self, audio_ms: int, at: float, resumed: bool = False) -> None:
        self.stop_waiting()
        self.ended = False
        self.confirmed = self.words_final = False
        self.open_utterances += 1
        self.complete(False)  # the newest judgement is of words before this speech
        if resumed and self.early_ms is not None:  # an early close was wrong: the same turn goes on
            self.metrics.early_closes_resumed.inc()
            self.withdraw()
        elif not resumed:
            self.responses.interruption_reset()
        self.early_ms = None
        self.begin_input(spoken=True)
        self.user.speech_started(audio_ms)
        td = self.options.turn_detection
        if isinstance(td, p.ServerVadTurnDetection):
            self.user.announce()  # the baseline: any speech is a turn
        if self.responses.busy:
            self.responses.barge_start = at
            if isinstance(td, p.ServerVadTurnDetection) and td.interrupt_response:
                self.responses.stop_speaking("turn_detected")  # the baseline: any speech stops the reply
                self.cancel("turn_detected")
            elif self.ducks:
                self.ducking.duck(audio_ms, at)

    def speech_stopped(self, audio_ms: int, at: float, early: bool = False) -> None:
        self.responses.end_of_input = at
        self.responses.interruption_ended(at)
        if early:  # standard clients hear of the pause once it is confirmed
            self.metrics.early_closes.inc()
            self.early_ms = audio_ms
            return
        self.user.speech_stopped(audio_ms)
        self.confirmed = True
        self.release()

    def pause_confirmed(self, audio_ms: int) -> None:
        if self.early_ms is None:
            return
        self.user.speech_stopped(self.early_ms)
        self.early_ms, self.confirmed = None, True
        self.release()

    def recognized(self, text: Any) -> None:
        """A recognized slice: shown as transcription, then heard (or, empty at a pause, the pause itself); a
        partial only replaces the engine's provisional words."""
        if text.partial:
            if text.text:
                self.user.hearing(True, start_ms=round(text.start_s * 1000))
                self.heard(text.text, False, partial=True, spoken=True)
            return
        if text.final:
            self.open_utterances = max(0, self.open_utterances - 1)
        final = text.final and not self.open_utterances  # not if the speaker went on after an early close
        self.user.heard(text.text, final, spoken=True, seconds=text.end_s - text.start_s,
                        start_ms=round(text.start_s * 1000))
        if text.text:
            self.heard(text.text, final, spoken=True)
        elif final:
            self.paused()
        if final:
            self.words_final = True
            self.release()
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
        if not spoken:
            self.confirmed = self.words_final = False

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


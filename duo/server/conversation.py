"""The logic of one Realtime session: client events drive its engine session, engine events its replies.

Input side here (slices, speech start and stop, truncation, settings) and every turn-taking rule: when
speech opens an input, stops a reply, or is answered (DUO's judgement, server_vad, the incomplete timeout,
the client). The reply side is `responses.py`; the microphone, `speech_in.py`, only reports what it heard
(this object is its `Ears`). A promoted input ends the running reply, generating or
still being played, with `response.done` `cancelled` / `turn_detected`. Server events go out through the
transport; nothing here touches the socket or the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from starlette.websockets import WebSocketDisconnect

from duo.engine import EngineLoop, SessionHandle
from duo.engine import events as ev

from . import objects as ob
from . import protocol as p
from . import server_events as se
from .metrics import Metrics
from .options import SessionOptions
from .responses import Responses
from .settings import Settings
from .speech import SpeechServices
from .speech_in import Hearing, SpeechIn
from .transport import SlowClient, Transport

log = logging.getLogger(__name__)


class Conversation:
    def __init__(self, session_id: str, transport: Transport, loop: EngineLoop, speech: SpeechServices,
                 settings: Settings, metrics: Metrics) -> None:
        self.id, self.transport, self.loop, self.speech = session_id, transport, loop, speech
        self.settings, self.metrics = settings, metrics
        self.send = transport.send
        self.options = SessionOptions(instructions=settings.instructions)
        self.handle: SessionHandle = loop.open_session(self.options.engine_config(), session_id=session_id)
        self.listener = SpeechIn(speech, settings.audio_burst_s, self, self._hearing())
        self.responses = Responses(transport, speech, metrics)
        self.input_item: str | None = None
        self.pump: asyncio.Task[None] | None = None
        self.last_state = ""  # the newest DUO decision on the input being heard
        self.ended = False  # the user's utterance ended at a pause
        self.over_reply = False  # the utterance began while a reply was running
        self.unfinished: asyncio.TimerHandle | None = None  # answers an `incomplete` utterance after a silence

    def start(self) -> None:
        self.send(se.SessionCreated(session=self.options.describe(self.id)))
        self.pump = asyncio.create_task(self._pump(self.handle))

    def close(self) -> None:
        self._stop_waiting()
        self.handle.close()  # frees the session's KV at the next tick
        self.listener.close()
        self.responses.close()
        if self.pump is not None:
            self.pump.cancel()

    # -- client events ---------------------------------------------------------------------------------
    async def on_client_event(self, event: Any) -> None:
        match event:
            case p.SessionUpdate():
                options = dataclasses.replace(self.options)
                options.apply(event.session)
                if options.engine_config() != self.options.engine_config():
                    await self._reopen(options, event.event_id)
                self.options = options
                self.listener.configure(self._hearing())
                self.send(se.SessionUpdated(session=self.options.describe(self.id)))
            case p.AudioAppend():
                await self.listener.append(event)
            case p.AudioCommit():
                self.listener.commit(event)
                self.send(se.AudioCommitted(item_id=self.input_item))
            case p.AudioClear():
                self.listener.clear()
                self.send(se.AudioCleared())
            case p.ItemCreate():
                if event.item.role != "user":
                    raise p.ProtocolError("unsupported_item", "only user messages can be added", event.event_id,
                                          "item.role")
                text = " ".join(c.text for c in event.item.content)
                item_id = event.item.id or p.new_id("item")
                self.send(se.ItemAdded(item=ob.UserItem(id=item_id, content=[ob.InputText(text=text)])))
                self.heard(text, final=True, item_id=item_id)
            case p.DuoInputSlice():
                self.heard(event.text, event.final)
            case p.ResponseCreate():
                self.answer_now()
            case p.ResponseCancel():
                if self.responses.reply is None:
                    self.responses.stop_speaking("client_cancelled")
                self._cancel("client_cancelled")
            case p.ItemTruncate():
                reply, heard = self.responses.truncate(event)
                if reply is self.responses.reply and reply.playback is not None:
                    self._cancel("client_cancelled")  # still generating: it ends where the listener stopped
                if heard is not None:
                    self.handle.truncate(reply.id, heard)  # the model keeps only what was heard
                self.send(se.ItemTruncated(item_id=event.item_id, content_index=event.content_index,
                                           audio_end_ms=event.audio_end_ms))

    async def _reopen(self, options: SessionOptions, event_id: str | None) -> None:
        """New engine settings: a new engine session continues the conversation as the model holds it.

        The swap runs between engine ticks, so the history it reads is consistent; a running reply ends
        `cancelled`. Settings the engine refuses leave the session as it was.
        """
        try:
            self.handle = await self.loop.reopen(self.handle, options.engine_config())
        except ValueError as exc:
            raise p.ProtocolError("invalid_session", str(exc), event_id, "session") from None
        self.responses.ended("cancelled", "client_cancelled")
        self.input_item = None
        self.pump = asyncio.create_task(self._pump(self.handle))

    def _hearing(self) -> Hearing:
        return Hearing(self.options.input_rate, *self.options.slicing_ms)

    @property
    def judged(self) -> bool:
        return isinstance(self.options.turn_detection, p.DuoTurnDetection)

    def heard(self, text: str, final: bool, item_id: str | None = None) -> None:
        """A slice of the user's words (typed, or recognized from speech) goes to the engine."""
        if self._begin_input(item_id) and self.responses.busy:
            self.responses.barge_start = time.monotonic()
        if final:
            self.responses.end_of_input = time.monotonic()
        self._stop_waiting()
        self.ended = final
        self.handle.push_slice(text, final, judge=self.judged)

    def paused(self) -> None:
        """The speaker paused after a slice cut by the length limit: the utterance has ended."""
        self.ended = True
        self.handle.pause()
        self._wait_for_more()

    def answer_now(self) -> None:
        """Answer the input heard so far without a `process` decision; the reply consumes that input."""
        self._stop_waiting()
        self.handle.respond()
        self.input_item, self.last_state = None, ""

    # -- the microphone (SpeechIn's ears) --------------------------------------------------------------
    def speech_started(self, audio_ms: int) -> None:
        self._stop_waiting()
        self.ended = False
        self._begin_input()
        if self.responses.busy:
            self.responses.barge_start = time.monotonic()
            td = self.options.turn_detection
            if isinstance(td, p.ServerVadTurnDetection) and td.interrupt_response:
                self.responses.stop_speaking("turn_detected")  # the baseline: any speech stops the reply
                self._cancel("turn_detected")
        self.send(se.SpeechStarted(audio_start_ms=audio_ms, item_id=self.input_item))

    def speech_stopped(self, audio_ms: int) -> None:
        self.responses.end_of_input = time.monotonic()
        self.send(se.SpeechStopped(audio_end_ms=audio_ms, item_id=self.input_item))

    def recognized(self, text: Any) -> None:
        """A recognized slice: shown as transcription, then heard (or, empty at a pause, the pause itself)."""
        item = self.input_item or p.new_id("item")
        if text.text:
            self.send(se.TranscriptionDelta(item_id=item, delta=text.text))
        if text.final and text.utterance_text:
            self.send(se.TranscriptionCompleted(item_id=item, transcript=text.utterance_text))
        if text.text:
            self.heard(text.text, text.final)
        elif text.final:
            self.paused()
        td = self.options.turn_detection
        if text.final and isinstance(td, p.ServerVadTurnDetection) and td.create_response and text.utterance_text:
            self.answer_now()

    def _begin_input(self, item_id: str | None = None) -> bool:
        """A new user input item starts unless one is open; remembers whether it began over a reply."""
        if self.input_item is not None:
            return False
        self.input_item = item_id or p.new_id("item")
        self.over_reply = self.responses.busy
        return True

    def _wait_for_more(self) -> None:
        """An ended utterance judged unfinished: the user may go on; if they stay silent, answer it.

        Not for speech that began over a reply: never judged `process`, it is more often someone else talking
        than a request, and it leaves the reply running as it did while being heard.
        """
        td = self.options.turn_detection
        if not (self.ended and self.last_state == "incomplete") or self.over_reply or self.unfinished is not None:
            return
        if isinstance(td, p.DuoTurnDetection) and td.incomplete_timeout_ms is not None:
            self.unfinished = asyncio.get_running_loop().call_later(td.incomplete_timeout_ms / 1000,
                                                                    self._answer_unfinished)

    def _answer_unfinished(self) -> None:
        self.unfinished = None
        if self.ended and self.last_state == "incomplete" and self.input_item is not None:
            log.info("session=%s event=incomplete_timeout item=%s", self.id, self.input_item)
            self.metrics.incomplete_timeouts.inc()
            self.answer_now()

    def _stop_waiting(self) -> None:
        if self.unfinished is not None:
            self.unfinished.cancel()
            self.unfinished = None

    def _cancel(self, reason: str) -> None:
        if self.responses.reply is not None:
            self.responses.reply.cancel_reason = reason
        self.handle.cancel()

    # -- engine events ---------------------------------------------------------------------------------
    async def _pump(self, handle: SessionHandle) -> None:
        """One engine session's events, in order, until it is replaced (`_reopen`) or the session ends."""
        try:
            while True:
                event = await handle.events.get()
                if handle is not self.handle:  # replaced: what is left of it is moot
                    if isinstance(event, ev.SessionClosed):
                        return
                    continue
                await self.on_engine_event(event)
        except (SlowClient, WebSocketDisconnect):
            raise
        except Exception as exc:  # this session ends; the loop and the other sessions go on
            log.exception("session=%s event=session_failed", self.id)
            self.transport.error("internal_error", f"{type(exc).__name__}: {exc}")
            await self.transport.close(1011)

    async def on_engine_event(self, event: ev.Event) -> None:
        match event:
            case ev.StateDecided():
                self.metrics.states.labels(str(event.state)).inc()
                self.send(se.InputState(item_id=self.input_item, state=str(event.state),
                                        probs={str(k): round(v, 4) for k, v in event.probs.items()},
                                        slice_text=event.slice_text, input_text=event.input_text,
                                        forecast=event.forecast, held=event.held))
                if event.state == "ignore":
                    self.responses.barge_start = 0.0  # speech meant for someone else is no barge-in
                if event.state != "incomplete" and not event.held:
                    self.input_item = None
                self.last_state = str(event.state)
                self._wait_for_more()
            case ev.ResponseStarted():
                await self.responses.started(event, spoken="audio" in self.options.output_modalities)
            case ev.TextDelta():
                self.responses.delta(event)
            case ev.ResponseDone():
                self.responses.done(event)
            case ev.Error():
                self.transport.error(event.code, event.message)
                if event.fatal:
                    await self.transport.close(1011)
            case ev.ContextTrimmed():
                self.send(se.ContextTrimmed(dropped_turns=event.dropped_turns, tokens_before=event.tokens_before,
                                            tokens_after=event.tokens_after))

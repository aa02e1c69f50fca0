"""The logic of one Realtime session: client events drive its engine session, engine events its replies.

Here: the client's events (settings, audio, the client's edits of the conversation, responses it asks
for), the engine session's lifecycle (rewritten when the conversation or its settings change) and the pump
of its events; what those events do is `engine_events.py`. Turn taking (when speech opens an input, stops
a reply or is answered) is `turns.py`, the microphone's `Ears`; the user item being heard and when standard
clients learn of it, `user_input.py`; the conversation's items, `items.py`; the reply side, `responses.py`.
A promoted input ends the running reply, generating or still being played, with `response.done`
`cancelled` / `turn_detected`. Nothing here touches the socket or the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from starlette.websockets import WebSocketDisconnect

from duo.engine import DEFAULT_INSTRUCTIONS, EngineLoop, SessionConfig, SessionHandle

from . import objects as ob
from . import protocol as p
from . import server_events as se
from .engine_events import EngineEvents
from .items import ROOT, Items
from .metrics import Metrics
from .options import SessionOptions, output_tokens
from .responses import Request, Responses
from .settings import Settings
from .speech import SpeechServices
from .speech_in import Hearing, SpeechIn
from .transport import SlowClient, Transport
from .turns import Turns
from .user_input import UserInput

log = logging.getLogger(__name__)


class Conversation:
    def __init__(self, session_id: str, transport: Transport, loop: EngineLoop, speech: SpeechServices,
                 settings: Settings, metrics: Metrics) -> None:
        self.id, self.transport, self.loop, self.speech = session_id, transport, loop, speech
        self.settings, self.metrics = settings, metrics
        self.send = transport.send
        self.options = SessionOptions(instructions=settings.instructions)
        self.handle: SessionHandle = loop.open_session(self.options.engine_config(), session_id=session_id)
        self.items = Items()
        self.user = UserInput(self.send, self.items)
        self.responses = Responses(transport, speech, metrics, self.items, p.new_id("conv"))
        self.pump: asyncio.Task[None] | None = None
        self.closed = False
        self.buffered = False  # audio appended since the last commit or clear
        cuda = str(getattr(loop.engine.backbone, "device", "cpu")).startswith("cuda")
        self.partial_ms = settings.partial_ms if settings.partial_ms is not None else (300 if cuda else 0)
        self.turns = Turns(session_id, self.handle, self.options, self.user, self.responses, metrics,
                           lambda complete: self.listener.judged_complete(complete))
        self.held = self.turns.held
        self.listener = SpeechIn(speech, settings.audio_burst_s, self.turns, self._hearing())
        self.engine_events = EngineEvents(session_id, transport, metrics, self.options, self.user, self.turns,
                                          self.responses, lambda: self._rewrite(None))

    def start(self) -> None:
        self._configure_listening()
        self.send(se.SessionCreated(session=self._described()))
        self.pump = asyncio.create_task(self._pump(self.handle))

    def close(self) -> None:
        self.closed = True
        self.turns.stop_waiting()
        self.handle.close()  # frees the session's KV at the next tick
        self.listener.close()
        self.responses.close()
        if self.pump is not None:
            self.pump.cancel()

    async def finished(self) -> None:
        """Wait for the event pump that `close` cancelled, so no task of this session outlives it."""
        if self.pump is not None:  # its end (cancelled, or the client gone) is this session's end
            await asyncio.gather(self.pump, return_exceptions=True)

    # -- client events ---------------------------------------------------------------------------------
    async def on_client_event(self, event: Any) -> None:
        if isinstance(event, p.ItemCreate | p.DuoInputSlice | p.ResponseCreate | p.AudioCommit):
            self.engine_events.cause = event.event_id
        match event:
            case p.SessionUpdate():
                await self._update(event)
            case p.AudioAppend():
                await self.listener.append(event)
                self.buffered = True
            case p.AudioCommit():
                self._commit(event)
            case p.AudioClear():
                self.listener.clear()
                self.turns.withdraw()
                self.turns.confirmed = self.turns.words_final = True
                self.turns.open_utterances = 0
                self.buffered = False
                if self.user.item is not None and not self.user.item.announced:
                    self.user.drop()
                self.send(se.AudioCleared())
            case p.ItemCreate():
                await self._add_item(event)
            case p.ItemRetrieve():
                if (item := self.items.get(event.item_id)) is None:
                    raise p.ProtocolError("item_retrieve_invalid_item_id", f"no item {event.item_id!r}",
                                          event.event_id, "item_id")
                self.send(se.ItemRetrieved(item=item))
            case p.ItemDelete():
                if not self.items.delete(event.item_id):
                    raise p.ProtocolError("item_delete_invalid_item_id", f"no item {event.item_id!r}",
                                          event.event_id, "item_id")
                self.send(se.ItemDeleted(item_id=event.item_id))
                await self._rewrite(event.event_id)
            case p.DuoInputSlice():
                self.turns.begin_input(spoken=False)
                if not event.partial:
                    self.user.heard(event.text, event.final, spoken=False)
                self.turns.heard(event.text, event.final and not event.partial, partial=event.partial)
            case p.ResponseCreate():
                await self.listener.recognized_all()  # a committed buffer is answered to its end
                await self._create_response(event)
            case p.ResponseCancel():
                if self.responses.reply is None:
                    self.responses.stop_speaking("client_cancelled")
                self.turns.cancel("client_cancelled")
            case p.ItemTruncate():
                reply, heard = self.responses.truncate(event)
                if reply is self.responses.reply and reply.playback is not None:
                    self.turns.cancel("client_cancelled")  # still generating: it ends where the listener stopped
                if heard is not None:
                    self.turns.withdraw()  # a held reply's promotion could not be undone after the cut
                    self.handle.truncate(reply.id, heard)  # the model keeps only what was heard
                self.send(se.ItemTruncated(item_id=event.item_id, content_index=event.content_index,
                                           audio_end_ms=event.audio_end_ms))

    async def _update(self, event: p.SessionUpdate) -> None:
        """Apply what can be applied; a field duo cannot honour is named in one error, the rest still holds."""
        options = dataclasses.replace(self.options)
        options.apply(event.session)
        if options.engine_config() != self.options.engine_config():
            await self._rewrite(event.event_id, options.engine_config())  # from the next utterance on
        self.options = self.turns.options = self.engine_events.options = options
        self._configure_listening()
        if rejected := event.session.rejected:
            names = ", ".join(f"session.{where} ({why})" for where, why in rejected)
            self.transport.error("invalid_value", f"not applied: {names}", event.event_id,
                                 f"session.{rejected[0][0]}")
        self.send(se.SessionUpdated(session=self._described()))

    def _described(self) -> ob.SessionInfo | ob.BetaSessionInfo:
        shape = self.options.describe(self.id, self.transport.beta)
        return ob.BetaSessionInfo(**shape) if self.transport.beta else ob.SessionInfo(**shape)

    def _configure_listening(self) -> None:
        self.listener.configure(self._hearing())
        self.user.duo_events = self.turns.ducking.events = self.options.duo_events
        self.user.vad_events = self.options.turn_detection is not None
        self.user.complete_at_end = not self.turns.judged

    def _commit(self, event: p.AudioCommit) -> None:
        """The client ends the user's turn: what it said is a user item, however DUO would judge it."""
        if not self.buffered:
            raise p.ProtocolError("input_audio_buffer_commit_empty", "no audio appended since the last commit",
                                  event.event_id)
        self.buffered = False
        more = self.listener.commit(event) or self.listener.unreported > 0  # slices still being recognized
        item = self.user.open(spoken=True)
        item.committed = True
        self.turns.confirmed = True  # the client ended the turn: a held reply goes out once its words are in
        self.turns.release()
        self.user.announce()
        if not more:  # nothing left to recognize: it is complete as it stands
            self.user.close(now=True)

    async def _add_item(self, event: p.ItemCreate) -> None:
        """A client item: user text at the end is new input (not answered on its own); anything else, or an
        item put earlier in the conversation, rewrites the conversation the model holds."""
        previous = event.previous_item_id
        if previous is not None and previous != ROOT and previous not in self.items:
            raise p.ProtocolError("item_not_found", f"no item {previous!r}", event.event_id, "previous_item_id")
        text = event.item.text
        content: list[Any] = ([ob.InputText(text=text)] if event.item.role != "assistant"
                              else [ob.OutputText(text=text)])
        item = ob.MessageItem(id=event.item.id or p.new_id("item"), role=event.item.role, content=content)
        appended = self.items.appended(previous) and event.item.id not in self.items
        before = self.items.add(item, previous)
        self.send(se.ItemAdded(previous_item_id=before, item=item))
        self.send(se.ItemDone(previous_item_id=before, item=item))
        if appended and item.role == "user":
            if text:
                self.turns.withdraw()  # the words DUO held a reply for are input again, and this text joins them
                self.handle.push_slice(text, True, judge=False)
        else:
            await self._rewrite(event.event_id)

    async def _create_response(self, event: p.ResponseCreate) -> None:
        if self.responses.reply is not None:
            raise p.ProtocolError("conversation_already_has_active_response",
                                  f"response {self.responses.reply.id} is still in progress", event.event_id)
        params = event.response or p.ResponseParams()
        modalities = params.output_modalities or params.modalities or self.options.output_modalities
        request = Request(spoken="audio" in modalities, metadata=params.metadata,
                          in_conversation=params.conversation != "none", codec=self.options.output_format.codec)
        config = self.options.engine_config(instructions=params.instructions)
        if (limit := params.max_output_tokens or params.max_response_output_tokens) is not None:
            sampling = dataclasses.replace(config.sampling, max_new_tokens=output_tokens(limit))
            config = dataclasses.replace(config, sampling=sampling)
        if self._effective(config) != self.handle.session.config or not request.in_conversation:
            await self._rewrite(event.event_id, config)
            self.engine_events.restore = True  # after this response, the session's own settings and conversation again
        tag = p.new_id("req")
        self.engine_events.requests[tag] = request
        self.turns.withdraw()  # the client's response answers the input: a held reply of DUO's gives way
        self.turns.may_answer = False  # and no later withdrawal may take the client's response back
        self.turns.answer_now(tag)

    async def _rewrite(self, event_id: str | None, config: SessionConfig | None = None) -> None:
        """A new engine session holds the conversation as the items now tell it (a running reply ends
        `cancelled`); settings the engine refuses leave the session as it was."""
        config = self._effective(config or self.options.engine_config())
        self.responses.sync_item()  # a running reply's item holds what it has said so far
        history = self.items.history()
        try:
            self.handle = self.turns.handle = await self.loop.reopen(self.handle, config, history.turns)
        except ValueError as exc:
            raise p.ProtocolError("invalid_session", str(exc), event_id, "session") from None
        if self.closed:  # the client left while the engine swapped sessions
            self.handle.close()
            return
        self.responses.ended("cancelled", "client_cancelled")
        self.held.drop()  # the old engine session's held reply went with it
        self.user.drop()
        if history.pending:
            self.handle.push_slice(history.pending, True, judge=False)
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()  # the old session's events are moot (the pump itself returns after this event)
        self.pump = asyncio.create_task(self._pump(self.handle))

    def _effective(self, config: SessionConfig) -> SessionConfig:
        """`config` with the conversation's system items after its instructions."""
        if not (extra := self.items.history().instructions):
            return config
        base = config.instructions if config.instructions is not None else DEFAULT_INSTRUCTIONS
        return dataclasses.replace(config, instructions=f"{base}\n{extra}")

    def _hearing(self) -> Hearing:
        return Hearing.of(self.options, self.turns.judged, self.partial_ms)

    # -- engine events (applied by `engine_events.py`) -------------------------------------------------
    async def _pump(self, handle: SessionHandle) -> None:
        """One engine session's events, in order, until it is replaced (`_rewrite`) or the session ends."""
        try:
            while handle is self.handle:  # once replaced, what is left of it is moot
                event = await handle.events.get()
                if handle is self.handle:
                    await self.engine_events.on_engine_event(event)
        except (SlowClient, WebSocketDisconnect):
            raise
        except Exception as exc:  # this session ends; the loop and the other sessions go on
            log.exception("session=%s event=session_failed", self.id)
            self.transport.error("internal_error", f"{type(exc).__name__}: {exc}")
            await self.transport.close(1011)

"""What one engine session's events do to the Realtime session: replies, judgements, errors for the client.

A reply DUO starts before the user's turn is confirmed is held unheard (`held.py`), its audio spoken ahead
(`presynth.py`), and applied only on its `Release`; a withdrawn one is counted. A response the client asked
for under its own settings (`restore`) puts the session's own settings and conversation back once it is
done. The conversation (`conversation.py`) owns this object, pumps the events into it and keeps `options`
current; nothing here touches the socket or the model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from duo.engine import events as ev

from . import server_events as se
from .held import Release
from .metrics import Metrics
from .options import SessionOptions
from .presynth import speak_ahead
from .responses import Request, Responses
from .transport import Transport
from .turns import Turns
from .user_input import UserInput

log = logging.getLogger(__name__)


class EngineEvents:
    def __init__(self, session_id: str, transport: Transport, metrics: Metrics, options: SessionOptions,
                 user: UserInput, turns: Turns, responses: Responses,
                 restore_session: Callable[[], Awaitable[None]]) -> None:
        self.id, self.transport, self.send, self.metrics = session_id, transport, transport.send, metrics
        self.options = options  # the owner keeps it current
        self.user, self.turns, self.held, self.responses = user, turns, turns.held, responses
        self.restore_session = restore_session  # rewrites the engine session under the session's own settings
        self.requests: dict[str, Request] = {}  # by the tag of each `respond`: what the client asked
        self.restore = False  # the engine runs one response's own settings: back to the session's after it
        self.cause: str | None = None  # event_id of the newest client event that fed the engine

    async def on_engine_event(self, event: ev.Event) -> None:
        """An engine event, unless it belongs to a reply held until the user's turn is confirmed."""
        if isinstance(event, Release):
            rid = self.held.response_id
            for held in self.held.release():
                await self._apply(held)
            if rid is not None:
                self.responses.voice.release(rid)  # its audio spoken ahead follows the events just sent
            return
        if isinstance(event, ev.ResponseDone) and event.status is ev.ResponseStatus.WITHDRAWN:
            log.info("session=%s event=reply_withdrawn response=%s tokens=%d", self.id, event.response_id,
                     event.num_tokens)
            self.metrics.withdrawn_replies.inc()
            self.metrics.discarded_tokens.inc(event.num_tokens)
        if self.held.take(event) or (isinstance(event, ev.ResponseStarted) and self.turns.holds(event)):
            await speak_ahead(event, self.held, self.responses.voice, self.options)
            return
        await self._apply(event)

    async def _apply(self, event: ev.Event) -> None:
        match event:
            case ev.StateDecided():
                self.metrics.states.labels(str(event.state)).inc()
                if self.options.duo_events:
                    self.send(se.InputState(
                        item_id=self.user.item.id if self.user.item else None, state=str(event.state),
                        probs={str(k): round(v, 4) for k, v in event.probs.items()}, slice_text=event.slice_text,
                        input_text=event.input_text, forecast=event.forecast, held=event.held))
                self.turns.judged_as(event)
            case ev.ResponseStarted():
                self.turns.restore("interrupted")  # a ducked reply is cut by this one
                request = self.requests.pop(event.request or "", None)
                if self.user.item is not None:  # the reply answers it: a user turn, complete as it stands
                    self.user.announce()
                    self.user.close(now=True)
                spoken = "audio" in self.options.output_modalities
                codec = self.options.output_format.codec
                await self.responses.started(event, request or Request(spoken=spoken, codec=codec))
            case ev.TextDelta():
                self.responses.delta(event)
            case ev.ResponseDone():
                self.responses.done(event)
                if self.restore:
                    self.restore = False
                    await self.restore_session()
            case ev.Error():
                self.transport.error(event.code, event.message, self.cause)
                if event.fatal:
                    await self.transport.close(1011)
            case ev.ContextTrimmed():
                if self.options.duo_events:
                    self.send(se.ContextTrimmed(dropped_turns=event.dropped_turns,
                                                tokens_before=event.tokens_before, tokens_after=event.tokens_after))

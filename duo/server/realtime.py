"""One Realtime connection: a transport and a conversation, run as three tasks.

The reader parses client events and hands them to the conversation; the pump turns the engine session's
events into server events; the writer drains the bounded outbound queue to the socket. Transport
(`transport.py`), wire models (`protocol/`, `server_events/`), logic (`conversation.py`, `engine_events.py`) and speech
(`speech_in.py`, `speech_out.py`) live apart; this module only starts and stops them together.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from duo.engine import EngineLoop

from . import protocol as p
from .conversation import Conversation
from .metrics import Metrics
from .settings import Settings
from .speech import SpeechServices
from .transport import SlowClient, Transport

log = logging.getLogger(__name__)


class RealtimeSession:
    def __init__(self, ws: WebSocket, loop: EngineLoop, speech: SpeechServices, settings: Settings,
                 metrics: Metrics, beta: bool = False) -> None:
        self.ws = ws
        self.id = p.new_id("sess")
        self.transport = Transport(ws, settings, metrics, beta, self.id)
        self.conversation = Conversation(self.id, self.transport, loop, speech, settings, metrics)

    @property
    def hears_audio(self) -> bool:
        """The client streams audio (it is recognized, so slow recognition delays it)."""
        return self.conversation.listener.stream is not None

    async def run(self) -> None:
        self.ws.state.session_id = self.id  # the connection's own log lines name the session
        self.conversation.start()
        writer = asyncio.create_task(self.transport.write())
        reader = asyncio.create_task(self.transport.read(self.conversation.on_client_event))
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if (exc := task.exception()) and not isinstance(exc, WebSocketDisconnect | SlowClient):
                    # not one event failing (the reader answers those with `error`): the session itself
                    log.error("session=%s event=session_failed error=%r", self.id, exc, exc_info=exc)
                    await self.transport.close(1011, "internal error")
        finally:
            self.conversation.close()
            reader.cancel()
            await self.transport.finish(writer)
            await self.conversation.finished()

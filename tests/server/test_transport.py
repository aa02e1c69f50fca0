"""The session transport on a real socket: an event whose handler fails is answered with `internal_error`
(a `server_error`) and the session reads on."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from duo.server import protocol as p
from duo.server import server_events as se
from duo.server.connections import Guard, uvicorn_config
from duo.server.metrics import Metrics
from duo.server.settings import Settings
from duo.server.transport import Transport

from .helpers import Client


async def _session(ws: WebSocket) -> None:
    """A transport whose handler fails on one input and acknowledges the others."""
    await ws.accept()
    transport = Transport(ws, Settings(), Metrics(), beta=False, session_id="sess_test")

    async def handle(event: Any) -> None:
        if isinstance(event, p.DuoInputSlice) and event.text == "divide":
            _ = 1 / 0
        transport.send(se.AudioCleared())

    writer = asyncio.create_task(transport.write())
    await transport.read(handle)
    await transport.finish(writer)


def test_a_failing_handler_answers_internal_error_and_the_session_goes_on() -> None:
    settings = Settings()
    config = uvicorn_config(Starlette(routes=[WebSocketRoute("/ws", _session)]), settings,
                            Guard(settings, Metrics()), host="127.0.0.1", port=0, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async def run() -> None:
            import websockets

            c = Client(await websockets.connect(f"ws://127.0.0.1:{port}/ws"))
            await c.send("duo.input.slice", text="divide", event_id="evt_1")
            error = (await c.recv(timeout=10))["error"]
            assert (error["type"], error["code"], error["event_id"]) == ("server_error", "internal_error", "evt_1")
            assert "ZeroDivisionError" in error["message"]
            await c.send("input_audio_buffer.clear")
            assert (await c.recv(timeout=10))["type"] == "input_audio_buffer.cleared"
            await c.ws.close()

        asyncio.run(run())
    finally:
        server.should_exit = True
        thread.join(30)

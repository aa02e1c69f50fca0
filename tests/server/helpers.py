"""A real uvicorn server on loopback and a small websockets client for the server tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
import websockets

from duo.server.app import create_app
from duo.server.settings import Settings


class LiveServer:
    def __init__(self, settings: Settings, backbone: Any) -> None:
        self.app = create_app(settings, backbone=backbone)
        self.uvicorn = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                     ws_max_size=1 << 24))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    @property
    def state(self) -> Any:
        return self.app.state.server

    @property
    def port(self) -> int:
        return self.uvicorn.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def live_server(backbone: Any, **settings: Any) -> Iterator[LiveServer]:
    server = LiveServer(Settings(**settings), backbone)
    server.thread.start()
    deadline = time.monotonic() + 120
    while not (server.uvicorn.started and server.state.ready.is_set()):
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.uvicorn.should_exit = True
        server.thread.join(30)


class Client:
    """A Realtime client over a plain websockets connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, kind: str, **body: Any) -> None:
        await self.ws.send(json.dumps({"type": kind, **body}))

    async def recv(self, timeout: float = 60) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 120, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.recv(max(0.1, deadline - time.monotonic()))
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event

    async def configure(self, max_tokens: int = 24, **turn_detection: Any) -> None:
        td = {"type": "duo", "forecast_tokens": 1, **turn_detection}
        await self.send("session.update", session={"audio": {"input": {"turn_detection": td}},
                                                   "max_output_tokens": max_tokens})
        await self.until("session.updated")

    async def say(self, text: str) -> None:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.send("conversation.item.create", item=item)


async def connect(url: str, **kw: Any) -> Client:
    ws = await websockets.connect(url, max_size=1 << 24, **kw)
    client = Client(ws)
    assert (await client.recv())["type"] == "session.created"
    return client

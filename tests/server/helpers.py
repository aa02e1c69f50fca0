"""A real uvicorn server on loopback and a small websockets client for the server tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import websockets

from duo.server.inprocess import InProcessServer, serve_in_process
from duo.server.settings import Settings


@contextmanager
def live_server(backbone: Any, **settings: Any) -> Iterator[InProcessServer]:
    with serve_in_process(Settings(**settings), backbone, timeout_s=120) as server:
        yield server


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
        """Words for DUO to judge, as a duo-aware client types them (standard text items are not judged)."""
        await self.send("duo.input.slice", text=text, final=True)

    async def add_text(self, text: str, role: str = "user", **kw: Any) -> None:
        """A standard text item: part of the conversation, answered when the client asks."""
        kind = "input_text" if role != "assistant" else "output_text"
        item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
        await self.send("conversation.item.create", item=item, **kw)


async def connect(url: str, **kw: Any) -> Client:
    ws = await websockets.connect(url, max_size=1 << 24, **kw)
    client = Client(ws)
    assert (await client.recv())["type"] == "session.created"
    return client

"""The `openai` Python SDK's Realtime client against duo: GA (`client.realtime`) or beta (`client.beta.realtime`).

Usage: python openai_sdk.py CONFIG_JSON   (CONFIG_JSON's "api" is "ga" or "beta")
Each scenario records the server events the SDK parsed, as (type, fields) the test asserts on.
"""

from __future__ import annotations

import base64
from typing import Any

import common
from openai import AsyncOpenAI

CFG = common.config()
BETA = CFG["api"] == "beta"
# GA name -> the name a beta connection hears
NAMES = {"response.output_text.delta": "response.text.delta", "response.output_audio.delta": "response.audio.delta",
         "response.output_audio_transcript.delta": "response.audio_transcript.delta",
         "conversation.item.added": "conversation.item.created"}


def name(ga: str) -> str:
    return NAMES.get(ga, ga) if BETA else ga


def connect() -> Any:
    client = AsyncOpenAI(api_key=CFG["key"], base_url=CFG["http"] + "/v1", websocket_base_url=CFG["ws"] + "/v1")
    api = client.beta.realtime if BETA else client.realtime
    return api.connect(model="duo")


def session(modality: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    """Session settings as each API spells them; turn detection stays the server's default (DUO's)."""
    if BETA:
        return {"modalities": [modality] if modality == "text" else ["audio", "text"],
                "max_response_output_tokens": max_tokens, **extra}
    return {"type": "realtime", "output_modalities": [modality], "max_output_tokens": max_tokens, **extra}


class Recorder:
    def __init__(self, conn: Any) -> None:
        self.conn, self.events = conn, []

    def of(self, ga: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == name(ga)]

    async def until(self, ga: str, timeout: float = 90, where: Any = None) -> dict[str, Any]:
        """The first event of that type (matching `where`) seen so far or arriving within `timeout`."""
        import asyncio

        def fits(event: dict[str, Any]) -> bool:
            return event["type"] == name(ga) and (where is None or where(event))

        if seen := [e for e in self.events if fits(e)]:
            return seen[0]

        async def read() -> dict[str, Any]:
            async for parsed in self.conn:
                event = parsed.model_dump(mode="json", exclude_none=False)
                if event["type"].endswith("audio.delta"):
                    event["delta"] = len(base64.b64decode(event["delta"]))
                self.events.append(event)
                if fits(event):
                    return event
            raise EOFError("the connection closed")

        return await asyncio.wait_for(read(), timeout)

    async def settle(self, seconds: float = 1.5) -> None:
        """Read whatever else arrives for a moment."""
        import asyncio
        import contextlib

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.until("no.such.event"), seconds)

    def summary(self) -> dict[str, Any]:
        return {"events": self.events}


async def say(conn: Any, text: str, role: str = "user", **kw: Any) -> None:
    kind = "output_text" if role == "assistant" else "input_text"
    kind = "text" if BETA and role == "assistant" else kind
    await conn.conversation.item.create(item={"type": "message", "role": role,
                                              "content": [{"type": kind, "text": text}]}, **kw)


async def speak(conn: Any, speech: str) -> None:
    async def send(chunk: bytes) -> None:
        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

    await common.stream(send, speech)


async def text_turn() -> dict[str, Any]:
    async with connect() as conn:
        r = Recorder(conn)
        await conn.session.update(session=session("text", 16))
        await r.until("session.updated")
        await say(conn, "what is the capital of france?")
        await r.settle(1.0)  # a text item alone is not answered
        await conn.response.create(response={"metadata": {"turn": "one"}}, event_id="evt_create")
        await r.until("response.done")
        await r.settle(0.5)
        return r.summary()


async def spoken_turn() -> dict[str, Any]:
    async with connect() as conn:
        r = Recorder(conn)
        await conn.session.update(session=session("text", 16))
        await r.until("session.updated")
        await speak(conn, "question")
        await r.until("response.done")
        await r.settle(0.5)
        return r.summary()


async def push_to_talk() -> dict[str, Any]:
    """No turn detection: the client commits, then asks; the whole committed buffer is answered."""
    async with connect() as conn:
        r = Recorder(conn)
        td = {"turn_detection": None} if BETA else {"audio": {"input": {"turn_detection": None}}}
        await conn.session.update(session=session("text", 12, **td))
        await r.until("session.updated")
        for chunk in common.speech("question"):  # as fast as the client can send: no pacing
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        await r.until("response.done")
        await r.settle(0.5)
        return r.summary()


async def long_reply(conn: Any, r: Recorder, max_tokens: int) -> str:
    """Ask for a long spoken reply; returns its response id once its audio flows."""
    await conn.session.update(session=session("audio", max_tokens))
    await r.until("session.updated")
    await say(conn, "tell me a long story about a dragon and a knight")
    await conn.response.create()
    created = await r.until("response.created")
    await r.until("response.output_audio.delta")
    return created["response"]["id"]


async def barge_in() -> dict[str, Any]:
    async with connect() as conn:
        r = Recorder(conn)
        first = await long_reply(conn, r, 120)
        await speak(conn, "question")
        second = (await r.until("response.created", 120, lambda e: e["response"]["id"] != first))["response"]["id"]
        await r.until("response.done", 120, lambda e: e["response"]["id"] == second)
        await r.settle(0.5)
        return {**r.summary(), "first": first, "second": second}


async def cancel() -> dict[str, Any]:
    async with connect() as conn:
        r = Recorder(conn)
        await conn.session.update(session=session("text", 200))
        await r.until("session.updated")
        await say(conn, "tell me a long story about a dragon and a knight")
        await conn.response.create()
        await r.until("response.output_text.delta" if not BETA else "response.text.delta")
        await conn.response.cancel()
        await r.until("response.done")
        await r.settle(1.0)
        return r.summary()


async def context_sync() -> dict[str, Any]:
    """The client writes the conversation: system, user and assistant items in order, one put first, one
    deleted; then a question about it is answered from that context."""
    async with connect() as conn:
        r = Recorder(conn)
        await conn.session.update(session=session("text", 12))
        await r.until("session.updated")
        await conn.conversation.item.create(item={"id": "item_u1", "type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "my name is ada"}]})
        await conn.conversation.item.create(previous_item_id="item_u1", item={
            "id": "item_a1", "type": "message", "role": "assistant",
            "content": [{"type": "text" if BETA else "output_text", "text": "nice to meet you ada"}]})
        await conn.conversation.item.create(previous_item_id="root", item={
            "id": "item_s1", "type": "message", "role": "system",
            "content": [{"type": "input_text", "text": "always answer in english"}]})
        await conn.conversation.item.create(item={"id": "item_x", "type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "forget this"}]})
        await conn.conversation.item.delete(item_id="item_x")
        await r.until("conversation.item.deleted")
        await conn.conversation.item.retrieve(item_id="item_a1")
        await r.until("conversation.item.retrieved")
        await conn.conversation.item.retrieve(item_id="item_x", event_id="evt_gone")
        await r.until("error")
        common.checkpoint("synced")
        await say(conn, "what is my name?")
        await conn.response.create()
        await r.until("response.done")
        await r.settle(0.5)
        return r.summary()


async def background() -> dict[str, Any]:
    """Someone else talks over the reply (news, another person): DUO judges it `ignore`; the reply runs on."""
    async with connect() as conn:
        r = Recorder(conn)
        first = await long_reply(conn, r, 40)
        await speak(conn, "background")
        await r.until("response.done")
        await r.settle(2.0)
        return {**r.summary(), "first": first}


common.run({"text": text_turn, "spoken": spoken_turn, "push_to_talk": push_to_talk, "barge_in": barge_in,
            "cancel": cancel, "context": context_sync, "background": background})

"""livekit-plugins-openai's RealtimeModel / RealtimeSession against duo, the session an AgentSession drives
(here without a LiveKit room: the driver pushes microphone frames and reads the generations).

Usage: python livekit_realtime.py CONFIG_JSON
Records the session's events, each generation's text and audio, its chat context and the raw server events.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import common
from livekit import rtc
from livekit.agents import llm
from livekit.plugins.openai import realtime

CFG = common.config()
logging.basicConfig(level=logging.WARNING)


class Run:
    def __init__(self, modality: str, max_tokens: int) -> None:
        self.modality, self.max_tokens = modality, max_tokens
        self.events: list[dict[str, Any]] = []
        self.generations: list[dict[str, Any]] = []
        self.raw: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Run:
        self.http = aiohttp.ClientSession()
        self.model = realtime.RealtimeModel(model="duo", base_url=CFG["http"] + "/v1", api_key=CFG["key"],
                                            modalities=[self.modality], http_session=self.http)
        self.session = self.model.session()
        for kind in ("input_speech_started", "input_speech_stopped", "input_audio_transcription_completed",
                     "error"):
            self.session.on(kind, lambda event, kind=kind: self.events.append({"type": kind,
                                                                              "repr": repr(event)[:600]}))
        self.session.on("generation_created", self._generation)
        self.session.on("openai_server_event_received", self._raw)
        await common.until(lambda: any(e["type"] == "session.updated" for e in self.raw), 30, "session.updated")
        self.model.update_options(max_response_output_tokens=self.max_tokens)
        await common.until(lambda: sum(e["type"] == "session.updated" for e in self.raw) >= 2, 30, "the update")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.session.aclose()
        await self.http.close()
        for task in self.tasks:
            task.cancel()

    def _raw(self, event: dict[str, Any]) -> None:
        record = {"type": event.get("type")}
        if event.get("type") == "response.done":
            record["response"] = {k: event["response"].get(k) for k in ("id", "status", "status_details", "metadata")}
        self.raw.append(record)

    def _generation(self, event: llm.GenerationCreatedEvent) -> None:
        record: dict[str, Any] = {"user_initiated": event.user_initiated, "text": "", "audio_frames": 0,
                                  "done": False}
        self.generations.append(record)

        async def text(message: llm.MessageGeneration) -> None:
            async for piece in message.text_stream:
                record["text"] += str(piece)

        async def audio(message: llm.MessageGeneration) -> None:
            async for _ in message.audio_stream:
                record["audio_frames"] += 1

        async def read() -> None:
            async for message in event.message_stream:
                await asyncio.gather(text(message), audio(message))
            record["done"] = True

        self.tasks.append(asyncio.create_task(read()))

    def count(self, kind: str) -> int:
        return sum(e["type"] == kind for e in self.events)

    async def done(self, n: int = 1, timeout: float = 90) -> None:
        await common.until(lambda: sum(e["type"] == "response.done" for e in self.raw) >= n, timeout,
                           f"{n} response.done")

    async def speak(self, speech: str) -> None:
        async def send(chunk: bytes) -> None:
            self.session.push_audio(rtc.AudioFrame(chunk, common.RATE, 1, len(chunk) // 2))

        await common.stream(send, speech)

    async def add(self, role: str, text: str) -> None:
        ctx = self.session.chat_ctx.copy()
        ctx.add_message(role=role, content=text)
        await self.session.update_chat_ctx(ctx)

    def summary(self) -> dict[str, Any]:
        items = [{"role": i.role, "text": i.text_content or ""} for i in self.session.chat_ctx.items
                 if i.type == "message"]
        return {"events": self.events, "generations": self.generations, "raw": self.raw, "chat_ctx": items}


async def text_turn() -> dict[str, Any]:
    async with Run("text", 16) as run:
        await run.add("user", "what is the capital of france?")
        await asyncio.wait_for(run.session.generate_reply(), 15)  # matched by its echoed metadata
        await run.done()
        await asyncio.sleep(0.5)
        return run.summary()


async def spoken_turn() -> dict[str, Any]:
    async with Run("text", 16) as run:
        await run.speak("question")
        await run.done()
        await asyncio.sleep(1.0)
        return run.summary()


async def long_reply(run: Run) -> None:
    await run.add("user", "tell me a long story about a dragon and a knight")
    await asyncio.wait_for(run.session.generate_reply(), 15)
    await common.until(lambda: bool(run.generations) and run.generations[0]["audio_frames"] > 0, 60, "audio")


async def barge_in() -> dict[str, Any]:
    async with Run("audio", 120) as run:
        await long_reply(run)
        await run.speak("question")
        await run.done(2, 120)
        await asyncio.sleep(0.5)
        return run.summary()


async def cancel() -> dict[str, Any]:
    async with Run("text", 200) as run:
        await run.add("user", "tell me a long story about a dragon and a knight")
        await asyncio.wait_for(run.session.generate_reply(), 15)
        await common.until(lambda: bool(run.generations) and bool(run.generations[0]["text"]), 60, "text")
        run.session.interrupt()
        await run.done()
        await asyncio.sleep(1.0)
        return run.summary()


async def context_sync() -> dict[str, Any]:
    """LiveKit syncs its chat context as items (creates with previous_item_id, deletes) and waits for each."""
    async with Run("text", 12) as run:
        ctx = run.session.chat_ctx.copy()
        ctx.add_message(role="user", content="my name is ada")
        ctx.add_message(role="assistant", content="nice to meet you ada")
        extra = ctx.add_message(role="user", content="forget this")
        await run.session.update_chat_ctx(ctx)
        ctx = run.session.chat_ctx.copy()
        ctx.items = [i for i in ctx.items if i.id != extra.id]
        ctx.add_message(role="user", content="what is my name?")
        await run.session.update_chat_ctx(ctx)
        common.checkpoint("synced")
        await asyncio.wait_for(run.session.generate_reply(), 15)
        await run.done()
        await asyncio.sleep(0.5)
        return run.summary()


async def background() -> dict[str, Any]:
    async with Run("audio", 40) as run:
        await long_reply(run)
        await run.speak("background")
        await run.done(1, 120)
        await asyncio.sleep(2.0)
        return run.summary()


common.run({"text": text_turn, "spoken": spoken_turn, "barge_in": barge_in, "cancel": cancel,
            "context": context_sync, "background": background})

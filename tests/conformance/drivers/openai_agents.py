"""openai-agents' RealtimeAgent / RealtimeRunner against duo, as its documentation sets it up.

Usage: python openai_agents.py CONFIG_JSON
Records the session's events (type, and for raw model events the server event's type) and its history.
"""

from __future__ import annotations

import asyncio
from typing import Any

import common
from agents.realtime import RealtimeAgent, RealtimeRunner
from agents.realtime.model_inputs import RealtimeModelSendInterrupt

CFG = common.config()


class Run:
    """One RealtimeSession and everything it emitted."""

    def __init__(self, modality: str, max_tokens: int) -> None:
        agent = RealtimeAgent(name="assistant", instructions="You are a helpful voice assistant.")
        settings = {"modalities": [modality], "max_output_tokens": max_tokens}
        self.runner = RealtimeRunner(agent, config={"model_settings": settings})
        self.events: list[dict[str, Any]] = []
        self.session: Any = None
        self.items: list[Any] = []  # the SDK's own copy of the conversation (its newest history_updated)

    async def __aenter__(self) -> Run:
        self.session = await self.runner.run(model_config={
            "url": CFG["ws"] + "/v1/realtime?model=duo", "api_key": CFG["key"]})
        await self.session.__aenter__()
        self.reader = asyncio.create_task(self._read())
        await common.until(lambda: "session.updated" in self.raw(), 30, "session.updated")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.reader.cancel()
        await self.session.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for event in self.session:
            record: dict[str, Any] = {"type": event.type}
            if event.type == "raw_model_event":
                data = getattr(event.data, "data", None)
                record["raw"] = data.get("type") if isinstance(data, dict) else getattr(event.data, "type", None)
                if isinstance(data, dict) and data.get("type") == "response.done":
                    record["response"] = {k: data["response"].get(k) for k in ("id", "status", "status_details")}
            elif event.type == "error":
                record["error"] = repr(event.error)[-1500:]
            elif event.type == "history_updated":
                self.items = list(event.history)
            self.events.append(record)

    def raw(self) -> list[str]:
        return [e["raw"] for e in self.events if e["type"] == "raw_model_event"]

    def count(self, kind: str) -> int:
        return sum(e["type"] == kind for e in self.events)

    def history(self) -> list[dict[str, Any]]:
        out = []
        for item in self.items:
            content = getattr(item, "content", None) or []
            text = " ".join((getattr(c, "text", None) or getattr(c, "transcript", None) or "") for c in content)
            out.append({"role": getattr(item, "role", None), "status": getattr(item, "status", None),
                        "text": text.strip()})
        return out

    async def turn_done(self, n: int = 1, timeout: float = 90) -> None:
        await common.until(lambda: self.count("agent_end") >= n, timeout, f"{n} agent_end")

    def summary(self) -> dict[str, Any]:
        return {"events": self.events, "history": self.history()}


async def speak(run: Run, speech: str) -> None:
    await common.stream(run.session.send_audio, speech)


async def text_turn() -> dict[str, Any]:
    async with Run("text", 16) as run:
        await run.session.send_message("what is the capital of france?")
        await run.turn_done()
        await asyncio.sleep(0.5)
        return run.summary()


async def spoken_turn() -> dict[str, Any]:
    async with Run("text", 16) as run:
        await speak(run, "question")
        await run.turn_done()
        await common.until(lambda: "conversation.item.input_audio_transcription.completed" in run.raw(), 10)
        await asyncio.sleep(1.0)
        return run.summary()


async def long_reply(run: Run) -> None:
    await run.session.send_message("tell me a long story about a dragon and a knight")
    await common.until(lambda: run.count("audio") > 0, 60, "audio")


async def barge_in() -> dict[str, Any]:
    async with Run("audio", 120) as run:
        await long_reply(run)
        await speak(run, "question")
        await run.turn_done(2, 120)
        await asyncio.sleep(0.5)
        return run.summary()


async def cancel() -> dict[str, Any]:
    async with Run("text", 200) as run:
        await run.session.send_message("tell me a long story about a dragon and a knight")
        await common.until(lambda: "response.output_text.delta" in run.raw(), 60, "a text delta")
        # session.interrupt() leaves cancelling to the server's turn detection (interrupt_response): a
        # forced cancel is the SDK's own way to stop a response outright
        await run.session.model.send_event(RealtimeModelSendInterrupt(force_response_cancel=True))
        await run.turn_done()
        await asyncio.sleep(1.0)
        return run.summary()


async def context_sync() -> dict[str, Any]:
    """Two turns: the SDK's own copy of the conversation must be the one duo's model holds."""
    async with Run("text", 12) as run:
        await run.session.send_message("my name is ada")
        await run.turn_done()
        await run.session.send_message("what is my name?")
        await run.turn_done(2)
        await asyncio.sleep(1.0)
        common.checkpoint("two turns")
        return run.summary()


async def background() -> dict[str, Any]:
    async with Run("audio", 40) as run:
        await long_reply(run)
        await speak(run, "background")
        await run.turn_done(1, 120)
        await asyncio.sleep(2.0)
        return run.summary()


common.run({"text": text_turn, "spoken": spoken_turn, "barge_in": barge_in, "cancel": cancel,
            "context": context_sync, "background": background})

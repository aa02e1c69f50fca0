"""pipecat's OpenAIRealtimeLLMService against duo, in a pipeline as pipecat's realtime examples build one
(context aggregators around the service; no transport: the driver feeds microphone frames and reads what
would go to the speaker).

Usage: python pipecat_realtime.py CONFIG_JSON
Records the frames leaving the service and the service's conversation-item events.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import common
from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime import events
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

CFG = common.config()
logger.remove()
logger.add(sys.stderr, level="WARNING")  # pipecat logs every frame at DEBUG


class Speaker(FrameProcessor):
    """Where the transport's output would be: records what the service produced."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.run.saw(frame)
        await self.push_frame(frame, direction)


class Run:
    def __init__(self, modality: str, max_tokens: int, messages: list[dict[str, str]],
                 turn_detection: Any = None) -> None:
        audio_in = events.AudioInput(turn_detection=turn_detection) if turn_detection is not None else None
        props = events.SessionProperties(output_modalities=[modality], max_output_tokens=max_tokens,
                                         instructions="You are a helpful voice assistant.",
                                         audio=events.AudioConfiguration(input=audio_in) if audio_in else None)
        self.llm = OpenAIRealtimeLLMService(api_key=CFG["key"], base_url=CFG["ws"] + "/v1/realtime",
                                            settings=OpenAIRealtimeLLMService.Settings(model="duo",
                                                                                       session_properties=props))
        self.context = LLMContext(messages=messages)
        pair = LLMContextAggregatorPair(self.context)
        self.frames: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.llm.event_handler("on_conversation_item_created")(self._item)
        self.llm.event_handler("on_conversation_item_updated")(self._item)
        self.pipeline = Pipeline([pair.user(), self.llm, Speaker(self), pair.assistant()])
        self.worker = PipelineWorker(self.pipeline, params=PipelineParams(audio_in_sample_rate=common.RATE),
                                     cancel_on_idle_timeout=False, check_dangling_tasks=False)

    async def _item(self, service: Any, item_id: str, item: Any) -> None:
        if item is not None:
            text = " ".join((c.text or c.transcript or "") for c in (item.content or []))
            self.items.append({"id": item_id, "role": item.role, "status": item.status, "text": text.strip()})

    def saw(self, frame: Frame) -> None:
        record: dict[str, Any] = {"frame": type(frame).__name__}
        if isinstance(frame, LLMTextFrame):
            record["text"] = frame.text
        elif isinstance(frame, ErrorFrame):
            record["error"] = str(frame.error)[:800]
        elif isinstance(frame, TTSAudioRawFrame):
            record["bytes"] = len(frame.audio)
        self.frames.append(record)

    def count(self, name: str) -> int:
        return sum(f["frame"] == name for f in self.frames)

    async def __aenter__(self) -> Run:
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self.task = asyncio.create_task(runner.run())
        await self.worker.queue_frame(LLMContextFrame(self.context))  # sets the conversation up, then answers
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.worker.cancel()
        await asyncio.wait_for(self.task, 20)

    async def speak(self, speech: str) -> None:
        async def send(chunk: bytes) -> None:
            await self.worker.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=common.RATE, num_channels=1))

        await common.stream(send, speech)

    async def replies(self, n: int, timeout: float = 90) -> None:
        await common.until(lambda: self.count(LLMFullResponseEndFrame.__name__) >= n, timeout, f"{n} replies")

    def summary(self) -> dict[str, Any]:
        return {"frames": self.frames, "items": self.items,
                "context": [{"role": m.get("role"), "content": m.get("content")} for m in self.context.get_messages()
                            if isinstance(m, dict)]}


def question(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def text_turn() -> dict[str, Any]:
    async with Run("text", 16, question("what is the capital of france?")) as run:
        await run.replies(1)
        await asyncio.sleep(0.5)
        return run.summary()


async def spoken_turn() -> dict[str, Any]:
    async with Run("text", 16, question("say hello")) as run:
        await run.replies(1)
        await run.speak("question")
        await run.replies(2)
        await asyncio.sleep(1.0)
        return run.summary()


async def long_reply(max_tokens: int) -> Run:
    run = Run("audio", max_tokens, question("tell me a long story about a dragon and a knight"))
    await run.__aenter__()
    await common.until(lambda: run.count(TTSAudioRawFrame.__name__) > 0, 60, "audio")
    return run


async def barge_in() -> dict[str, Any]:
    run = await long_reply(120)
    try:
        await run.speak("question")
        await run.replies(2, 120)
        await asyncio.sleep(0.5)
        return run.summary()
    finally:
        await run.__aexit__()


async def cancel() -> dict[str, Any]:
    """With turn detection off pipecat's own VAD decides; its interruption clears the input and cancels."""
    async with Run("text", 200, question("tell me a long story about a dragon and a knight"),
                   turn_detection=False) as run:
        await common.until(lambda: run.count(LLMTextFrame.__name__) > 0, 60, "text")
        await run.worker.queue_frame(InterruptionFrame())
        await run.replies(1)
        await asyncio.sleep(1.0)
        return run.summary()


async def context_sync() -> dict[str, Any]:
    """pipecat sends its whole context as items when the conversation starts, then asks for a reply."""
    messages = [{"role": "system", "content": "always answer in english"},
                {"role": "user", "content": "my name is ada"},
                {"role": "assistant", "content": "nice to meet you ada"},
                {"role": "user", "content": "what is my name?"}]
    async with Run("text", 12, messages) as run:
        await run.replies(1)
        await asyncio.sleep(0.5)
        common.checkpoint("synced")
        return run.summary()


async def background() -> dict[str, Any]:
    run = await long_reply(40)
    try:
        await run.speak("background")
        await run.replies(1, 120)
        await asyncio.sleep(2.0)
        return run.summary()
    finally:
        await run.__aexit__()


common.run({"text": text_turn, "spoken": spoken_turn, "barge_in": barge_in, "cancel": cancel,
            "context": context_sync, "background": background})

"""One Realtime connection: client events in, engine and speech work, server events out.

Three tasks per connection keep transport and logic apart: the reader parses client events and acts
on them, the pump turns engine events into server events, the writer drains a bounded outbound queue
to the socket. A client that stops reading fills its queue and is closed (policy in docs/protocol.md):
it never holds up the engine loop, which serves every session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from duo.engine import events as ev
from duo.engine.loop import EngineLoop, SessionHandle

from . import protocol as p
from .metrics import Metrics
from .options import SessionOptions
from .settings import Settings
from .speech import AudioInput, RateLimited, SpeechServices

log = logging.getLogger(__name__)
_STATUS = {  # engine status -> (Realtime status, reason)
    ev.ResponseStatus.COMPLETED: ("completed", None),
    ev.ResponseStatus.INTERRUPTED: ("cancelled", "turn_detected"),
    ev.ResponseStatus.CANCELLED: ("cancelled", "client_cancelled"),
    ev.ResponseStatus.LENGTH: ("incomplete", "max_output_tokens"),
}


MAX_ITEMS = 32


class SlowClient(Exception):
    pass


@dataclass
class Reply:
    id: str
    item_id: str
    started: float
    text: str = ""
    first_token: bool = False
    speech: asyncio.Queue[str | None] | None = None
    speaker_task: asyncio.Task[None] | None = None
    audio_ms: float = 0.0
    done_sent: bool = False


class RealtimeSession:
    def __init__(self, ws: WebSocket, loop: EngineLoop, speech: SpeechServices, settings: Settings,
                 metrics: Metrics, beta: bool = False) -> None:
        self.ws, self.loop, self.speech, self.settings = ws, loop, speech, settings
        self.metrics, self.beta = metrics, beta
        self.id = p.new_id("sess")
        self.options = SessionOptions(instructions=settings.instructions)
        self.out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=settings.outbound_queue)
        self.handle: SessionHandle = loop.open_session(self.options.engine_config())
        self.audio: AudioInput | None = None
        self.slices: asyncio.Queue[tuple[AudioInput, Any]] = asyncio.Queue()
        self.asr_task: asyncio.Task[None] | None = None
        self.pump_task: asyncio.Task[None] | None = None
        self.input_item: str | None = None
        self.reply: Reply | None = None
        self.speaking: Reply | None = None  # a reply whose audio is still being produced or played
        self.end_of_input = 0.0
        self.barge_start = 0.0
        self.items: dict[str, Reply] = {}

    # -- plumbing --------------------------------------------------------------------------------------
    def send(self, kind: str, **body: Any) -> None:
        self._put(p.server_event(kind, self.beta, **body))

    def error(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        self.metrics.errors.labels(code).inc()
        self._put(p.error_event(code, message, event_id, param, self.beta))

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self.out.put_nowait(event)
        except asyncio.QueueFull:  # the client stopped reading: it is closed, the engine never waits for it
            log.warning("session=%s event=slow_client queued=%d", self.id, self.out.qsize())
            self._closing = asyncio.ensure_future(self.ws.close(1008, "client too slow"))
            raise SlowClient from None

    async def _writer(self) -> None:
        while (event := await self.out.get()) is not None:
            await self.ws.send_text(json.dumps(event))

    async def run(self) -> None:
        self.send("session.created", session=self.options.describe(self.id))
        writer = asyncio.create_task(self._writer())
        self.pump_task = asyncio.create_task(self._pump())
        reader = asyncio.create_task(self._read())
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if (exc := task.exception()) and not isinstance(exc, WebSocketDisconnect | SlowClient):
                    log.error("session=%s event=session_failed error=%r", self.id, exc)
        finally:
            self.handle.close()  # frees the session's KV at the next tick
            for task in (reader, self.pump_task, self.asr_task, self.speaking and self.speaking.speaker_task):
                if task is not None:
                    task.cancel()
            if not writer.done():
                with contextlib.suppress(asyncio.QueueFull):
                    self.out.put_nowait(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer, 2.0)
            writer.cancel()

    async def _read(self) -> None:
        deadline = time.monotonic() + self.settings.max_session_s
        while True:
            timeout = min(self.settings.idle_timeout_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(self.ws.receive(), max(timeout, 0.0))
            except TimeoutError:
                over = time.monotonic() >= deadline
                self.error("session_expired" if over else "idle_timeout",
                           "maximum session length reached" if over else "no client events for too long")
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is None:
                continue
            if len(raw) > self.settings.max_frame_bytes:
                self.error("frame_too_large", f"message of {len(raw)} bytes exceeds {self.settings.max_frame_bytes}")
                continue
            try:
                await self.handle_event(p.parse_client_event(raw))
            except p.ProtocolError as exc:
                self.error(exc.code, exc.message, exc.event_id, exc.param)

    # -- client events ---------------------------------------------------------------------------------
    async def handle_event(self, event: Any) -> None:
        match event:
            case p.SessionUpdate():
                before = self.options.engine_config()
                self.options.apply(event.session)
                if self.options.engine_config() != before:
                    self._reopen()
                if self.audio is not None and event.session.audio is not None:
                    self.audio = None  # new rate or slicing: the next append starts a fresh stream
                self.send("session.updated", session=self.options.describe(self.id))
            case p.AudioAppend():
                await self._append(event)
            case p.AudioCommit():
                if self.audio is None:
                    raise p.ProtocolError("input_audio_buffer_commit_empty", "no audio to commit", event.event_id)
                self._audio_events(self.audio.commit())
                self.send("input_audio_buffer.committed", item_id=self.input_item)
            case p.AudioClear():
                if self.audio is not None:
                    self.audio.clear()
                self.send("input_audio_buffer.cleared")
            case p.ItemCreate():
                if event.item.role != "user":
                    raise p.ProtocolError("unsupported_item", "only user messages can be added", event.event_id,
                                          "item.role")
                text = " ".join(c.text for c in event.item.content)
                item_id = event.item.id or p.new_id("item")
                self.send("conversation.item.added", item={"id": item_id, "type": "message", "role": "user",
                                                           "content": [{"type": "input_text", "text": text}]})
                self._slice(text, final=True, item_id=item_id)
            case p.DuoInputSlice():
                self._slice(event.text, final=event.final)
            case p.ResponseCreate():
                self.handle.respond()
            case p.ResponseCancel():
                if self.speaking is not None and self.reply is None:
                    self._stop_speaking("client_cancelled")
                self.handle.cancel()
            case p.ItemTruncate():
                reply = self.items.get(event.item_id)
                if reply is None:
                    raise p.ProtocolError("item_not_found", f"no assistant item {event.item_id!r}", event.event_id,
                                          "item_id")
                if event.audio_end_ms > reply.audio_ms + 1:
                    raise p.ProtocolError("invalid_audio_end_ms", f"only {reply.audio_ms:.0f} ms of audio were sent",
                                          event.event_id, "audio_end_ms")
                if reply is self.speaking:
                    self._stop_speaking("client_cancelled")
                if reply.audio_ms:  # the words heard, assuming an even speaking rate within the reply
                    heard = int(len(reply.text) * min(1.0, event.audio_end_ms / reply.audio_ms))
                    self.handle.truncate(reply.id, heard)
                self.send("conversation.item.truncated", item_id=event.item_id, content_index=event.content_index,
                          audio_end_ms=event.audio_end_ms)

    def _reopen(self) -> None:
        """New engine settings: a new engine session continuing the conversation so far."""
        turns = list(self.handle.session.turns)
        self.handle.close()
        self.handle = self.loop.open_session(self.options.engine_config(), turns[: len(turns) // 2 * 2])
        self.reply, self.input_item = None, None
        if self.pump_task is not None:
            self.pump_task.cancel()
        self.pump_task = asyncio.get_running_loop().create_task(self._pump())

    @property
    def judged(self) -> bool:
        return isinstance(self.options.turn_detection, p.DuoTurnDetection)

    def _slice(self, text: str, final: bool, item_id: str | None = None) -> None:
        if self.input_item is None:
            self.input_item = item_id or p.new_id("item")
            if self.reply is not None or self.speaking is not None:
                self.barge_start = time.monotonic()
        if final:
            self.end_of_input = time.monotonic()
        self.handle.push_slice(text, final, judge=self.judged)

    # -- audio in --------------------------------------------------------------------------------------
    async def _append(self, event: p.AudioAppend) -> None:
        from duo.audio.errors import AudioError

        if self.audio is None:
            td = self.options.turn_detection
            slice_ms = td.slice_ms if isinstance(td, p.DuoTurnDetection) else 2000
            pause_ms = td.pause_ms if isinstance(td, p.DuoTurnDetection) else (td.silence_duration_ms if td else 500)
            recognizer, batcher = await self.speech.recognizer()
            self.audio = AudioInput(self.speech, recognizer, batcher, self.options.input_rate, slice_ms, pause_ms,
                                    self.settings.audio_burst_s)
            if self.asr_task is None:
                self.asr_task = asyncio.create_task(self._recognize())
        try:
            events = self.audio.push_base64(event.audio)
        except RateLimited as exc:
            raise p.ProtocolError("rate_limited", str(exc), event.event_id) from None
        except (AudioError, ValueError) as exc:
            raise p.ProtocolError("invalid_audio", str(exc), event.event_id, "audio") from None
        self._audio_events(events)

    def _audio_events(self, events: list[Any]) -> None:
        from duo.audio.events import SpeechStarted, SpeechStopped

        assert self.audio is not None
        for e in events:
            if isinstance(e, SpeechStarted):
                self.input_item = self.input_item or p.new_id("item")
                if self.reply is not None or self.speaking is not None:
                    self.barge_start = time.monotonic()
                    td = self.options.turn_detection
                    if isinstance(td, p.ServerVadTurnDetection) and td.interrupt_response:
                        self._interrupt_for_vad()
                self.send("input_audio_buffer.speech_started", audio_start_ms=int(e.time_s * 1000),
                          item_id=self.input_item)
            elif isinstance(e, SpeechStopped):
                self.end_of_input = time.monotonic()
                self.send("input_audio_buffer.speech_stopped", audio_end_ms=int(e.time_s * 1000),
                          item_id=self.input_item)
            else:
                self.slices.put_nowait((self.audio, e))

    async def _recognize(self) -> None:
        """Slices in order: recognized (batched with other sessions), shown, then fed to the engine."""
        while True:
            stream, piece = await self.slices.get()
            text = await stream.recognize(piece)
            item = self.input_item or p.new_id("item")
            if text.text:
                self.send("conversation.item.input_audio_transcription.delta", item_id=item, content_index=0,
                          delta=text.text)
            if text.final and text.utterance_text:
                self.send("conversation.item.input_audio_transcription.completed", item_id=item, content_index=0,
                          transcript=text.utterance_text)
            if text.text:
                self._slice(text.text, text.final)
            elif text.final:
                self.handle.pause()
            td = self.options.turn_detection
            if text.final and isinstance(td, p.ServerVadTurnDetection) and td.create_response and text.utterance_text:
                self.handle.respond()

    def _interrupt_for_vad(self) -> None:
        """server_vad baseline: any speech stops the reply (DUO instead judges it first)."""
        self._stop_speaking("turn_detected")
        self.handle.cancel()

    # -- engine events ---------------------------------------------------------------------------------
    async def _pump(self) -> None:
        handle = self.handle
        try:
            while True:
                event = await handle.events.get()
                if handle is not self.handle:
                    return
                await self.on_engine_event(event)
        except (asyncio.CancelledError, SlowClient, WebSocketDisconnect):
            raise
        except Exception as exc:  # this session ends; the loop and the other sessions go on
            log.exception("session=%s event=session_failed", self.id)
            self.error("internal_error", f"{type(exc).__name__}: {exc}")
            await self.ws.close(1011)

    async def on_engine_event(self, event: ev.Event) -> None:
        match event:
            case ev.StateDecided():
                self.metrics.states.labels(str(event.state)).inc()
                self.send("duo.input.state", item_id=self.input_item, state=str(event.state),
                          probs={str(k): round(v, 4) for k, v in event.probs.items()}, slice_text=event.slice_text,
                          input_text=event.input_text, forecast=event.forecast, held=event.held)
                if event.state != "incomplete" and not event.held:
                    self.input_item = None
            case ev.ResponseStarted():
                if self.speaking is not None and self.speaking is not self.reply:
                    self._stop_speaking("turn_detected")  # barge-in during playback of a finished reply
                reply = Reply(event.response_id, p.new_id("item"), time.monotonic())
                self.reply = self.items[reply.item_id] = reply
                while len(self.items) > MAX_ITEMS:  # only recent replies can still be truncated
                    del self.items[next(iter(self.items))]
                self.send("response.created", response={"id": reply.id, "object": "realtime.response",
                                                        "status": "in_progress", "output": []})
                self.send("response.output_item.added", response_id=reply.id, output_index=0,
                          item={"id": reply.item_id, "type": "message", "role": "assistant", "status": "in_progress",
                                "content": []})
                if "audio" in self.options.output_modalities:
                    await self._start_speaking(reply)
            case ev.TextDelta() if self.reply is not None and event.response_id == self.reply.id:
                reply = self.reply
                if not reply.first_token:
                    reply.first_token = True
                    if self.end_of_input:
                        self.metrics.reply_latency.observe(time.monotonic() - self.end_of_input)
                reply.text += event.delta
                kind = "response.output_audio_transcript.delta" if reply.speech else "response.output_text.delta"
                self.send(kind, response_id=reply.id, item_id=reply.item_id, output_index=0, content_index=0,
                          delta=event.delta)
                if reply.speech is not None:
                    reply.speech.put_nowait(event.delta)
            case ev.ResponseDone() if self.reply is not None and event.response_id == self.reply.id:
                reply, self.reply = self.reply, None
                status, reason = _STATUS[event.status]
                if status == "cancelled" and reply.speaker_task is not None:
                    self._stop_speaking(reason or "turn_detected")
                    return
                if reply.speech is not None:
                    reply.speech.put_nowait(None)  # the speaker finishes the response when its audio is out
                else:
                    self._finish(reply, status, reason)
            case ev.Error():
                self.error(event.code, event.message)
                if event.fatal:
                    await self.ws.close(1011)
            case ev.ContextTrimmed():
                self.send("duo.context.trimmed", dropped_turns=event.dropped_turns, tokens_before=event.tokens_before,
                          tokens_after=event.tokens_after)

    def _finish(self, reply: Reply, status: str, reason: str | None) -> None:
        if reply.done_sent:
            return
        reply.done_sent = True
        if status == "cancelled" and self.barge_start:
            self.metrics.barge_in_latency.observe(time.monotonic() - self.barge_start)
            self.barge_start = 0.0
        done = "response.output_audio_transcript.done" if reply.speech else "response.output_text.done"
        self.send(done, response_id=reply.id, item_id=reply.item_id, output_index=0, content_index=0,
                  **({"transcript": reply.text} if reply.speech else {"text": reply.text}))
        content = {"type": "output_audio" if reply.speech else "output_text",
                   ("transcript" if reply.speech else "text"): reply.text}
        item = {"id": reply.item_id, "type": "message", "role": "assistant", "status": "completed",
                "content": [content]}
        self.send("response.output_item.done", response_id=reply.id, output_index=0, item=item)
        details = {"type": status, "reason": reason} if reason else None
        self.send("response.done", response={"id": reply.id, "object": "realtime.response", "status": status,
                                             "status_details": details, "output": [item]})

    # -- audio out -------------------------------------------------------------------------------------
    async def _start_speaking(self, reply: Reply) -> None:
        speaker = await self.speech.speaker()
        if speaker is None:
            return
        reply.speech = asyncio.Queue()
        self.speaking = reply
        reply.speaker_task = asyncio.create_task(self._speak(reply, speaker))

    async def _speak(self, reply: Reply, speaker: Any) -> None:
        async def deltas():
            while (delta := await reply.speech.get()) is not None:
                yield delta

        started = time.monotonic()
        async for chunk in speaker.aspeak(deltas()):
            reply.audio_ms += len(chunk) / 2 / 24_000 * 1000
            self.send("response.output_audio.delta", response_id=reply.id, item_id=reply.item_id, output_index=0,
                      content_index=0, delta=base64.b64encode(chunk).decode())
        self.send("response.output_audio.done", response_id=reply.id, item_id=reply.item_id, output_index=0,
                  content_index=0)
        self._finish(reply, "completed", None)
        # playback outlives generation: the reply stays live (interruptible) until the client has played it
        await asyncio.sleep(max(0.0, reply.audio_ms / 1000 - (time.monotonic() - started)))
        if self.speaking is reply:
            self.speaking = None

    def _stop_speaking(self, reason: str) -> None:
        reply, self.speaking = self.speaking, None
        if reply is not None and reply.speaker_task is not None:
            reply.speaker_task.cancel()
            self._finish(reply, "cancelled", reason)  # a no-op if it was already done

"""The reply side of a session: engine replies become `response.*` events, spoken when audio is on.

A response is done when its generation ends, or, when spoken, once its audio is out. A reply stops early
on a barge-in (`turn_detected`) or at the client's request (`client_cancelled`), whether it is generating
or its audio is still being played; stopping withdraws its queued audio but never its events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from duo.engine import events as ev

from . import objects as ob
from . import protocol as p
from . import server_events as se
from .items import Items
from .metrics import Metrics
from .speech import SpeechServices
from .speech_out import Playback, SpeechOut
from .transport import Transport

_STATUS = {  # engine status -> (Realtime status, reason)
    ev.ResponseStatus.COMPLETED: ("completed", None),
    ev.ResponseStatus.INTERRUPTED: ("cancelled", "turn_detected"),
    ev.ResponseStatus.CANCELLED: ("cancelled", "client_cancelled"),
    ev.ResponseStatus.LENGTH: ("incomplete", "max_output_tokens"),
    ev.ResponseStatus.WITHDRAWN: ("cancelled", "turn_detected"),  # only if it was shown before it was taken back
}
MAX_ITEMS = 32  # recent assistant items that can still be truncated


@dataclass
class Reply:
    id: str
    item_id: str
    text: str = ""
    first_token: bool = False
    playback: Playback | None = None
    cancel_reason: str = "client_cancelled"  # why the engine was asked to stop it
    done_sent: bool = False
    ended_as: tuple[str, str | None] = ("completed", None)  # how generation ended, reported once spoken
    metadata: dict[str, str] | None = None  # the client's, echoed
    in_conversation: bool = True  # False: `conversation: "none"`, out of band
    tokens: int = 0

    @property
    def part(self) -> dict[str, str]:
        """Its content part as it stands (content-part events type it `audio` / `text`, GA and beta alike)."""
        if self.playback is not None:
            return {"type": "audio", "transcript": self.text}
        return {"type": "text", "text": self.text}

    def item(self, status: ob.ItemStatus) -> ob.MessageItem:
        content: ob.OutputText | ob.OutputAudioContent
        content = (ob.OutputAudioContent(transcript=self.text) if self.playback is not None
                   else ob.OutputText(text=self.text))
        shown = [content] if self.text or status != "in_progress" else []
        return ob.AssistantItem(id=self.item_id, status=status, content=shown)


@dataclass(frozen=True)
class Request:
    """What the client asked of one response (`response.create`'s overrides that duo honours)."""

    spoken: bool
    metadata: dict[str, str] | None = None
    in_conversation: bool = True
    codec: str = "pcm16"  # of the audio output


class Responses:
    def __init__(self, transport: Transport, speech: SpeechServices, metrics: Metrics, items: Items,
                 conversation_id: str) -> None:
        self.transport, self.metrics, self.items, self.conversation_id = transport, metrics, items, conversation_id
        self.send = transport.send
        self.voice = SpeechOut(speech, self._send_spoken, self._spoken)
        self.reply: Reply | None = None  # being generated
        self.replies: dict[str, Reply] = {}  # by item id, the newest MAX_ITEMS
        self.end_of_input = 0.0  # when the user last finished speaking (reply latency)
        self.barge_start = 0.0  # when speech over a reply began (barge-in latency)
        self.interrupt_end: float | None = None  # when the interrupting speech ended, the reply still sounding
        self.silenced_at: float | None = None  # when a barge-in silenced the reply, its speech still going on
        self.timed_audio: str | None = None  # the newest response whose first audio was timed

    @property
    def busy(self) -> bool:
        """A reply is being generated, or its audio produced or played."""
        return self.reply is not None or self.voice.speaking is not None

    def close(self) -> None:
        self.voice.close()

    async def started(self, event: ev.ResponseStarted, request: Request) -> None:
        if self.voice.speaking is not None:
            self.stop_speaking("turn_detected")  # barge-in during playback of an ended reply
        reply = Reply(event.response_id, p.new_id("item"), metadata=request.metadata,
                      in_conversation=request.in_conversation)
        self.reply = self.replies[reply.item_id] = reply
        while len(self.replies) > MAX_ITEMS:
            del self.replies[next(iter(self.replies))]
        if request.spoken:  # the voice is ready before the first event, so every event shows the reply's modality
            reply.playback = await self.voice.start(reply.id, reply.item_id, request.codec)
        self.send(se.ResponseCreated(response=ob.StartedResponse(
            id=reply.id, status="in_progress", **self._shown(reply))))
        item = reply.item("in_progress")
        self.send(se.OutputItemAdded(response_id=reply.id, item=item))
        if reply.in_conversation:
            self.send(se.ItemAdded(previous_item_id=self.items.add(item), item=item))
        self.send(se.ContentPartAdded(response_id=reply.id, item_id=reply.item_id, part=reply.part))
        if reply.done_sent and reply.playback is not None:  # it ended while the voice loaded
            self.voice.stop()

    def _shown(self, reply: Reply) -> dict[str, object]:
        return {"conversation_id": self.conversation_id if reply.in_conversation else None,
                "output_modalities": ["audio" if reply.playback is not None else "text"],
                "metadata": reply.metadata}

    def delta(self, event: ev.TextDelta) -> None:
        reply = self.reply
        if reply is None or event.response_id != reply.id or reply.done_sent:
            return  # nothing of a response after its response.done
        if not reply.first_token:
            reply.first_token = True
            if self.end_of_input:
                self.metrics.reply_latency.observe(time.monotonic() - self.end_of_input)
        reply.text += event.delta
        ids = {"response_id": reply.id, "item_id": reply.item_id}
        if reply.playback is not None:
            self.send(se.OutputAudioTranscriptDelta(**ids, delta=event.delta))
            self.voice.feed(reply.playback, event.delta)
        else:
            self.send(se.OutputTextDelta(**ids, delta=event.delta))

    def done(self, event: ev.ResponseDone) -> None:
        if self.reply is None or event.response_id != self.reply.id:
            return
        reply = self.reply
        reply.tokens = event.num_tokens
        status, reason = _STATUS[event.status]
        self.ended(status, reason if event.status is not ev.ResponseStatus.CANCELLED else reply.cancel_reason)

    def ended(self, status: str, reason: str | None) -> None:
        """Generation of the current reply ended; a spoken one is done once its audio is out, or now if cut."""
        reply, self.reply = self.reply, None
        if reply is None:
            return
        if reason == "turn_detected":
            self._barge_in_done()
        if reply.playback is not None and status == "cancelled" and reply.playback is self.voice.speaking:
            self.stop_speaking(reason or "turn_detected")
        if reply.playback is not None and status != "cancelled":
            reply.ended_as = (status, reason)
            self.voice.end(reply.playback)
        else:
            self._finish(reply, status, reason)

    def sync_item(self) -> None:
        """The running reply's conversation item as it stands (what a rewrite of the conversation keeps)."""
        if self.reply is not None and self.reply.in_conversation:
            self.items.replace(self.reply.item("in_progress"))

    def stop_speaking(self, reason: str) -> None:
        """Stop the reply being spoken or played; its queued audio is withdrawn, its events are not."""
        playback = self.voice.stop()
        if playback is None:
            return
        self.transport.outbox.drop_audio(playback.response_id)
        if reason == "turn_detected":
            self._barge_in_done()
        if (reply := self.replies.get(playback.item_id)) is not None:
            self._finish(reply, "cancelled", reason)  # a no-op if it was already done

    def truncate(self, event: p.ItemTruncate) -> tuple[Reply, int | None]:
        """The client played `audio_end_ms` of an item: stop it; returns it and the characters heard."""
        reply = self.replies.get(event.item_id)
        if reply is None:
            raise p.ProtocolError("item_not_found", f"no assistant item {event.item_id!r}", event.event_id, "item_id")
        playback = reply.playback
        audio_ms = playback.audio_ms if playback is not None else 0.0
        if event.audio_end_ms > audio_ms + 1:
            raise p.ProtocolError("invalid_audio_end_ms", f"only {audio_ms:.0f} ms of audio were sent",
                                  event.event_id, "audio_end_ms")
        if playback is None:
            return reply, None
        if playback is self.voice.speaking:
            self.stop_speaking("client_cancelled")
        heard = playback.heard_chars(event.audio_end_ms) if audio_ms else None
        if heard is not None and (item := self.items.get(reply.item_id)) is not None:  # only what was heard stays
            kept = [ob.OutputAudioContent(transcript=reply.text[:heard])]
            self.items.replace(item.model_copy(update={"content": kept}))
        return reply, heard

    def _spoken(self, playback: Playback) -> None:
        if (reply := self.replies.get(playback.item_id)) is not None:
            self._finish(reply, *reply.ended_as)  # all of its audio is out

    def _barge_in_done(self) -> None:
        if self.barge_start:
            now = time.monotonic()
            self.metrics.barge_in_latency.observe(now - self.barge_start)
            self.barge_start = 0.0
            if self.interrupt_end is not None:
                self.metrics.interruption_silence.observe(max(0.0, now - self.interrupt_end))
                self.interrupt_end = None
            else:
                self.silenced_at = now

    def interruption_ended(self, at: float) -> None:
        """The user's speech ended at `at`: if it interrupted a reply, time the silence from there."""
        if self.silenced_at is not None:
            self.metrics.interruption_silence.observe(max(0.0, self.silenced_at - at))
            self.silenced_at = None
        elif self.barge_start:
            self.interrupt_end = at

    def interruption_reset(self) -> None:
        self.interrupt_end = self.silenced_at = None

    def _send_spoken(self, event: se.ServerEvent) -> None:
        """The voice's events; the first audio of a reply times the wait from the end of the user's speech."""
        if isinstance(event, se.OutputAudioDelta) and event.response_id != self.timed_audio:
            self.timed_audio = event.response_id
            if self.end_of_input:
                self.metrics.first_audio.observe(time.monotonic() - self.end_of_input)
        self.send(event)

    def _finish(self, reply: Reply, status: str, reason: str | None) -> None:
        if reply.done_sent:
            return
        reply.done_sent = True
        ids = {"response_id": reply.id, "item_id": reply.item_id}
        if reply.playback is not None:
            self.send(se.OutputAudioTranscriptDone(**ids, transcript=reply.text))
        else:
            self.send(se.OutputTextDone(**ids, text=reply.text))
        self.send(se.ContentPartDone(**ids, part=reply.part))
        item = reply.item("completed" if status == "completed" else "incomplete")
        self.send(se.OutputItemDone(response_id=reply.id, item=item))
        if reply.in_conversation:
            self.items.replace(item)
            self.send(se.ItemDone(item=item))
        details = ob.StatusDetails(type=status, reason=reason) if reason else None
        usage = ob.Usage(total_tokens=reply.tokens, input_tokens=0, output_tokens=reply.tokens)
        self.send(se.ResponseDone(response=ob.FinishedResponse(id=reply.id, status=status, status_details=details,
                                                               output=[item], usage=usage, **self._shown(reply))))

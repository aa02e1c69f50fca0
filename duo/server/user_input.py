"""The user item being heard, and when standard clients are told of it.

Standard clients stop playback at `input_audio_buffer.speech_started` and add every transcript to their
chat context. Under DUO turn detection speech is only a user turn once DUO judges it addressed to duo,
so the standard events of an utterance (`speech_started` / `_stopped`, `committed`, the user item,
its transcription) wait until it is `announce`d; speech judged `ignore` is `drop`ped unseen. Duo-aware
clients hear everything at once as `duo.input.*`. Under `server_vad` an utterance is announced at its
first sound, as OpenAI does; with no turn detection, when the client commits it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import objects as ob
from . import protocol as p
from . import server_events as se
from .items import Items


@dataclass
class InputItem:
    id: str
    spoken: bool  # speech (input_audio), or text slices (`duo.input.slice`)
    start_ms: int = 0
    end_ms: int | None = None
    texts: list[str] = field(default_factory=list)
    final: bool = False  # the utterance ended (a pause, a commit)
    committed: bool = False  # the client ended it: a user turn however DUO would judge it
    seconds: float = 0.0  # of speech recognized
    announced: bool = False
    stopped_sent: bool = False
    closed: bool = False

    @property
    def transcript(self) -> str:
        return " ".join(self.texts)

    def deltas(self) -> list[str]:
        """The transcript as OpenAI streams it: every piece after the first with its leading space."""
        return [t if i == 0 else " " + t for i, t in enumerate(self.texts)]

    def message(self) -> ob.MessageItem:
        content = ob.InputAudio(transcript=self.transcript) if self.spoken else ob.InputText(text=self.transcript)
        return ob.MessageItem(id=self.id, role="user", content=[content])


class UserInput:
    def __init__(self, send: Callable[[se.ServerEvent], None], items: Items) -> None:
        self.send, self.items = send, items
        self.item: InputItem | None = None
        self.vad_events = True  # standard speech events exist (not with turn detection off)
        self.duo_events = False
        # An utterance is a complete item at its end (server_vad, or the client decides); under DUO once
        # its reply starts, so a reply it cuts is cancelled before the new user item appears, as in OpenAI
        self.complete_at_end = True

    def open(self, spoken: bool, start_ms: int = 0) -> InputItem:
        if self.item is None:
            self.item = InputItem(p.new_id("item"), spoken, start_ms)
        return self.item

    def speech_started(self, audio_ms: int) -> InputItem:
        item = self.open(True, audio_ms)
        item.final, item.end_ms, item.stopped_sent = False, None, False  # an utterance judged unfinished goes on
        if self.duo_events:
            self.send(se.DuoSpeechStarted(audio_start_ms=audio_ms, item_id=item.id))
        return item

    def speech_stopped(self, audio_ms: int) -> None:
        if (item := self.item) is None:
            return
        item.end_ms = audio_ms
        if self.duo_events:
            self.send(se.DuoSpeechStopped(audio_end_ms=audio_ms, item_id=item.id))
        if item.announced:
            self._stopped(item)

    def hearing(self, spoken: bool, start_ms: int | None = None) -> InputItem:
        """The item words being recognized go to (a partial's too, so its judgement names it); `start_ms`:
        where their audio began."""
        fresh = self.item is None
        item = self.open(spoken, start_ms or 0)
        if fresh and spoken and start_ms is not None and self.duo_events:
            # speech went on after the utterance it began in was dropped (`ignore`): an item of its own
            self.send(se.DuoSpeechStarted(audio_start_ms=start_ms, item_id=item.id))
        return item

    def heard(self, text: str, final: bool, spoken: bool, seconds: float = 0.0,
              start_ms: int | None = None) -> InputItem:
        """Words of the utterance; `start_ms`: where a recognized slice's audio began."""
        item = self.hearing(spoken, start_ms)
        if text:
            item.texts.append(text.strip())
        if self.duo_events and spoken and (text or final):  # an empty final slice still ends the utterance
            self.send(se.DuoTranscript(item_id=item.id, text=text.strip(), final=final))
        item.seconds += seconds
        if final:
            item.final = True
            if self.complete_at_end or item.committed:
                self.close()
        return item

    def announce(self) -> None:
        """The input is a user turn: standard clients hear of it now (and of what it already said)."""
        item = self.item
        if item is None or item.announced:
            return
        item.announced = True
        if item.spoken and self.vad_events:
            self.send(se.SpeechStarted(audio_start_ms=item.start_ms, item_id=item.id))
            if item.end_ms is not None:
                self._stopped(item)
        if item.final and (self.complete_at_end or item.committed):
            self.close()

    def close(self, now: bool = False) -> None:
        """An announced input is complete (or `now`, answered as it stands): its item joins the conversation."""
        item = self.item
        if item is None or not item.announced or not (item.final or now):
            return
        self.item, item.closed = None, True
        if item.spoken and self.vad_events and item.end_ms is not None:
            self._stopped(item)
        message = item.message()
        previous = self.items.add(message)
        pending = message.model_copy(update={"content": [ob.InputAudio(transcript=None)]}) if item.spoken else message
        if item.spoken:
            self.send(se.AudioCommitted(previous_item_id=previous, item_id=item.id))
        self.send(se.ItemAdded(previous_item_id=previous, item=pending))
        if item.spoken:
            for delta in item.deltas():
                self.send(se.TranscriptionDelta(item_id=item.id, delta=delta))
            self.send(se.TranscriptionCompleted(item_id=item.id, transcript=item.transcript,
                                                usage={"type": "duration", "seconds": round(item.seconds, 3)}))
        self.send(se.ItemDone(previous_item_id=previous, item=message))

    def drop(self) -> None:
        """Not for duo: nothing of it reaches standard clients."""
        self.item = None

    def _stopped(self, item: InputItem) -> None:
        if not item.stopped_sent and item.end_ms is not None and self.vad_events:
            item.stopped_sent = True
            self.send(se.SpeechStopped(audio_end_ms=item.end_ms, item_id=item.id))

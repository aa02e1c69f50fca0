"""The responses of a recorded run as the client heard them: when each started, played and was stopped.

The user hears a reply from its first audio chunk, played back to back in real time, until it ends or the
client stops it. A client stops a reply when its response is `cancelled`, when a newer response is created
(the protocol tells clients to flush playback then), and, under `server_vad`, when the server reports speech
(the OpenAI client convention for that mode, where any speech interrupts). Those are the moments a
barge-in is measured to, and the ones a false interruption is made of.

When the session asked for text only (no speech output on the server), the client is taken to read the reply
aloud itself at `TEXT_CHARS_PER_S` from its first token, so a reply still lasts as long as it would be heard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TOKEN_EVENTS = ("response.output_text.delta", "response.output_audio_transcript.delta")
AUDIO_EVENT = "response.output_audio.delta"
INF = math.inf
TEXT_CHARS_PER_S = 15.0  # about 170 words a minute


@dataclass
class Reply:
    """One response as the client saw and played it."""

    id: str
    created: float
    first_token: float | None = None
    first_audio: float | None = None
    done: float | None = None
    status: str | None = None
    reason: str | None = None
    audio_end: float | None = None  # when its playback (played back to back from arrival) ends
    stopped: float | None = None  # when the client stopped it, if before its natural end
    text: str = ""
    last_token: float | None = None

    @property
    def natural_end(self) -> float:
        """When it ended on its own: generation done and playback over (never, if it is running or was cut)."""
        if self.done is None or self.status == "cancelled":
            return INF
        return max(self.done, self.audio_end or 0.0)

    @property
    def end(self) -> float:
        return self.stopped if self.stopped is not None else self.natural_end

    def live_at(self, t: float) -> bool:
        return self.created <= t < self.end

    @property
    def first_output(self) -> float | None:
        """The first thing the user perceives: audio when there is any, else text."""
        return self.first_audio if self.first_audio is not None else self.first_token


def heard_by_user(r: Reply, record: dict[str, Any]) -> bool:
    """The reply reached the user: its audio (when the session speaks), its text otherwise, or its end."""
    if r.done is not None:
        return True
    return (r.first_audio if record.get("output", "audio") == "audio" else r.first_token) is not None


def replies(record: dict[str, Any]) -> list[Reply]:
    """The responses of a run, with playback and the moment each was stopped."""
    speed = float(record.get("speed", 1.0))
    found: dict[str, Reply] = {}
    order: list[Reply] = []
    created_at: list[tuple[float, str]] = []
    speech_at: list[float] = []
    for e in sorted(record["events"], key=lambda e: e["t"]):
        t, kind, rid = e["t"], e["type"], e.get("response_id")
        if kind == "response.created" and rid:
            found[rid] = Reply(rid, t)
            order.append(found[rid])
            created_at.append((t, rid))
            continue
        if kind == "input_audio_buffer.speech_started":
            speech_at.append(t)
        r = found.get(rid) if rid else None
        if r is None:
            continue
        if kind in TOKEN_EVENTS:
            r.first_token = t if r.first_token is None else r.first_token
            r.last_token = t
            r.text += e.get("delta", "")
        elif kind == AUDIO_EVENT:
            r.first_audio = t if r.first_audio is None else r.first_audio
            start = max(t, r.audio_end or t)
            r.audio_end = start + e.get("audio_ms", 0.0) / 1000 * speed
        elif kind == "response.done":
            r.done, r.status, r.reason = t, e.get("status"), e.get("reason")
    server_vad = record.get("mode") == "server_vad"
    for r in order:
        if record.get("output") == "text" and r.first_token is not None and r.last_token is not None:
            r.audio_end = max(r.last_token, r.first_token + len(r.text) / TEXT_CHARS_PER_S * speed)
        stops = [r.done] if r.status == "cancelled" and r.done is not None else []
        stops += [t for t, rid in created_at if rid != r.id and t > r.created]
        if server_vad:
            stops += [t for t in speech_at if t >= r.created]
        stops = [t for t in stops if t < r.natural_end]
        r.stopped = min(stops) if stops else None
    return order

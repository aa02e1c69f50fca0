"""Pre-synthesis: a held reply is spoken while it waits, so its first audio is ready when the turn is confirmed.

Without it, the wait from the end of the user's words to the first audio is the confirmation pause plus the
synthesis of the reply's first clause; with it, mostly the pause. Nothing is sent until the release
(`SpeechOut.release`); a withdrawn reply's synthesis is cancelled (`Held.on_drop` -> `SpeechOut.drop`).
"""

from __future__ import annotations

from duo.engine import events as ev

from .held import Held
from .options import SessionOptions
from .speech_out import SpeechOut


async def speak_ahead(event: ev.Event, held: Held, voice: SpeechOut, options: SessionOptions) -> None:
    """An event just held: the held reply's start begins its synthesis (when the session speaks), its text
    feeds it. Events of withdrawn replies, also kept from the client, are not spoken."""
    if getattr(event, "response_id", None) != held.response_id:
        return
    if isinstance(event, ev.ResponseStarted) and "audio" in options.output_modalities:
        await voice.hold(event.response_id, options.output_format.codec)
        if held.response_id != event.response_id:  # withdrawn while the voice loaded
            voice.drop(event.response_id)
    elif isinstance(event, ev.TextDelta):
        voice.hold_text(event.response_id, event.delta)

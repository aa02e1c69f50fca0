"""Server events: one typed model per event the server sends, and their wire form.

The wire form is the model's fields in order, `type` and `event_id` first; a top-level field left None is
omitted (the objects inside, from `objects.py`, keep theirs). Clients that connect with
`OpenAI-Beta: realtime=v1` get the beta names of `BETA_NAMES`. `docs/protocol.md` describes the same events.

The parts: the base and its wire form (`event.py`), the events of the session and its input
(`session_events.py`) and those of a response (`response_events.py`); every event is importable from here.
"""

from .event import BETA_NAMES, BETA_UNKNOWN, Error, ServerEvent
from .response_events import (
    ContentPartAdded,
    ContentPartDone,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ResponseCreated,
    ResponseDone,
)
from .session_events import (
    AudioCleared,
    AudioCommitted,
    ContextTrimmed,
    DuoDuck,
    DuoRestore,
    DuoSpeechStarted,
    DuoSpeechStopped,
    DuoTranscript,
    InputState,
    ItemAdded,
    ItemDeleted,
    ItemDone,
    ItemRetrieved,
    ItemTruncated,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionDelta,
)

__all__ = [
    "BETA_NAMES",
    "BETA_UNKNOWN",
    "AudioCleared",
    "AudioCommitted",
    "ContentPartAdded",
    "ContentPartDone",
    "ContextTrimmed",
    "DuoDuck",
    "DuoRestore",
    "DuoSpeechStarted",
    "DuoSpeechStopped",
    "DuoTranscript",
    "Error",
    "InputState",
    "ItemAdded",
    "ItemDeleted",
    "ItemDone",
    "ItemRetrieved",
    "ItemTruncated",
    "OutputAudioDelta",
    "OutputAudioDone",
    "OutputAudioTranscriptDelta",
    "OutputAudioTranscriptDone",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputTextDelta",
    "OutputTextDone",
    "ResponseCreated",
    "ResponseDone",
    "ServerEvent",
    "SessionCreated",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "TranscriptionCompleted",
    "TranscriptionDelta",
]

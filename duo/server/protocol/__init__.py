"""The wire protocol: OpenAI Realtime events (GA names, beta aliases accepted) plus `duo.*` events.

Client events are parsed into typed models here; server events are typed in `server_events/`.
`docs/protocol.md` is the one-page description of the same thing. The parts: what every event shares
(`wire.py`), the `session.update` payload (`session_config.py`), the events themselves (`client_events.py`)
and the parse of one frame (`parsing.py`).
"""

from duo.ids import new_id as new_id  # the wire's ids, minted as the engine mints its own

from ..turn_detection import DuoTurnDetection as DuoTurnDetection
from ..turn_detection import ServerVadTurnDetection as ServerVadTurnDetection
from .client_events import (
    CLIENT_EVENT_TYPES,
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    ContentPart,
    DuoInputSlice,
    ItemCreate,
    ItemDelete,
    ItemRetrieve,
    ItemTruncate,
    MessageItem,
    ResponseCancel,
    ResponseCreate,
    ResponseParams,
    SessionUpdate,
)
from .parsing import ProtocolError, parse_client_event, too_deep
from .session_config import AudioConfig, AudioFormat, AudioInput, AudioOutput, BetaAudioFormat, SessionPatch
from .wire import BETA_SUBPROTOCOL, MAX_DEPTH, MAX_ID, MAX_OUTPUT_TOKENS, Id, OutputTokens

__all__ = [
    "BETA_SUBPROTOCOL",
    "CLIENT_EVENT_TYPES",
    "MAX_DEPTH",
    "MAX_ID",
    "MAX_OUTPUT_TOKENS",
    "AudioAppend",
    "AudioClear",
    "AudioCommit",
    "AudioConfig",
    "AudioFormat",
    "AudioInput",
    "AudioOutput",
    "BetaAudioFormat",
    "ClientEvent",
    "ContentPart",
    "DuoInputSlice",
    "DuoTurnDetection",
    "Id",
    "ItemCreate",
    "ItemDelete",
    "ItemRetrieve",
    "ItemTruncate",
    "MessageItem",
    "OutputTokens",
    "ProtocolError",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseParams",
    "ServerVadTurnDetection",
    "SessionPatch",
    "SessionUpdate",
    "new_id",
    "parse_client_event",
    "too_deep",
]

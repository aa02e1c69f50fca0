"""Connections below the app: limits that hold before any request is complete, closes that never wait.

uvicorn's HTTP (h11) and WebSocket (websockets sans-I/O) protocols, extended so that
- a connection must complete its request headers within `header_timeout_s` of opening (or of its last
  response): a socket that sends nothing, or half a request, holds a file descriptor only that long;
- at most `max_connections` are open: at the cap a new connection evicts the oldest one still waiting for
  its request, or is refused, so file descriptors never run out (`/healthz` keeps answering);
- a peer that accepts no data for `write_timeout_s` is reset: a client that stops reading holds neither
  its socket, nor its kernel buffers, nor a session;
- a close never waits on a write buffer that does not drain: the transport is reset instead;
- a WebSocket message may be read ahead of the app (up to `ws_max_queue` / `READ_AHEAD_CHARS`), so pings
  and pongs are seen while a busy session works through its audio;
- the handshake headers are never logged (websockets logs them at DEBUG, keys included), nor is invalid
  UTF-8 logged with a traceback; accept() failures and limit hits are logged once per interval.

The parts: what every connection shares (`guard.py`), the HTTP and WebSocket protocols
(`http_protocol.py`, `websocket_protocol.py`) and the uvicorn config that binds them (`serving.py`).
"""

from .guard import FD_RESERVE, LOG_INTERVAL_S, Guard, addr, connection_cap, reset
from .http_protocol import HttpProtocol
from .serving import MAX_HEADER_BYTES, protocols, uvicorn_config
from .websocket_protocol import CLOSE_GRACE_S, READ_AHEAD_CHARS, WebSocketProtocol

__all__ = [
    "CLOSE_GRACE_S",
    "FD_RESERVE",
    "LOG_INTERVAL_S",
    "MAX_HEADER_BYTES",
    "READ_AHEAD_CHARS",
    "Guard",
    "HttpProtocol",
    "WebSocketProtocol",
    "addr",
    "connection_cap",
    "protocols",
    "reset",
    "uvicorn_config",
]

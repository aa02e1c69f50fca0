"""What every connection of one server shares: the cap, the count of what was dropped, a log that cannot flood.

Limit hits and accept() failures are logged once per interval, with how many were folded into the line; a
connection dropped for a limit is reset, so neither it nor its kernel buffers outlive the decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import socket
import struct
import time
from collections import Counter
from typing import Any

from ..metrics import Metrics
from ..settings import Settings

log = logging.getLogger("duo.server.connections")  # one logger for every connection module

FD_RESERVE = 128  # file descriptors kept for everything but connections (model files, threads, logs)
LOG_INTERVAL_S = 10.0


def connection_cap(settings: Settings) -> int:
    """`max_connections`, or what the open-file limit leaves for connections."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_sessions = 4 * settings.max_sessions + 256
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return by_sessions
    return max(16, min(soft - FD_RESERVE, by_sessions))


def reset(transport: asyncio.BaseTransport) -> None:
    """Close now, discarding what is buffered, with a TCP reset so the kernel frees its buffers too."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Guard:
    """The limits every connection of one server shares, what they dropped, and a log that cannot flood."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.max_connections = connection_cap(settings)
        self._logged: dict[str, float] = {}
        self._folded: Counter[str] = Counter()

    def note(self, event: str, **fields: Any) -> None:
        """One log line per event (and reason) per `LOG_INTERVAL_S`, with how many were folded into it."""
        key, now = f"{event}/{fields.get('reason', '')}", time.monotonic()
        if now - self._logged.get(key, -math.inf) < LOG_INTERVAL_S:
            self._folded[key] += 1
            return
        self._logged[key] = now
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        log.warning("event=%s %s folded=%d", event, detail, self._folded.pop(key, 0))

    def drop(self, transport: asyncio.BaseTransport, reason: str, client: Any, session: str | None = None) -> None:
        self.metrics.connections_dropped.labels(reason).inc()
        self.note("connection_dropped", reason=reason, client=addr(client), session=session)
        reset(transport)

    def quiet_accept_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """asyncio logs every failed accept() with a traceback; out of descriptors, that floods the log."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
                self.metrics.accept_errors.inc()
                self.note("accept_failed", error=repr(context.get("exception")))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)


def addr(client: Any) -> str | None:
    """`host:port` of an ASGI / uvicorn client tuple, for the log."""
    return f"{client[0]}:{client[1]}" if client else None

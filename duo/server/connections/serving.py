"""uvicorn serving the app with duo's protocols, bound to one server's guard, and uvicorn's own limits set."""

from __future__ import annotations

from typing import Any

import uvicorn

from ..settings import Settings
from .guard import Guard
from .http_protocol import HttpProtocol
from .websocket_protocol import WebSocketProtocol

MAX_HEADER_BYTES = 16 * 1024  # h11's own default, stated: a request head larger than this gets a 400


def protocols(guard: Guard) -> tuple[type[HttpProtocol], type[WebSocketProtocol]]:
    """The protocol classes of one server, bound to its guard."""
    http = type("DuoHttpProtocol", (HttpProtocol,), {"guard": guard})
    ws = type("DuoWebSocketProtocol", (WebSocketProtocol,), {"guard": guard})
    return http, ws


def uvicorn_config(app: Any, settings: Settings, guard: Guard, **options: Any) -> uvicorn.Config:
    """uvicorn serving `app` with duo's protocols and every limit uvicorn has of its own set from `settings`."""
    http, ws = protocols(guard)
    options.setdefault("host", settings.host)
    options.setdefault("port", settings.port)
    return uvicorn.Config(
        app, http=http, ws=ws,
        ws_max_size=settings.max_frame_bytes,  # refused from the frame header, before any of it is buffered
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]  # a float works as well
        # uvicorn answers 503 past this many connections or requests in flight; the cap above keeps
        # connections at `max_connections`, so this bounds requests still running on connections gone.
        limit_concurrency=guard.max_connections + 1,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=10,
        **options,
    )

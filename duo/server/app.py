"""The FastAPI application: health, readiness, metrics, the demo page and `/v1/realtime`.

The model loads and warms up in the background after start-up: `/healthz` answers as soon as the
process lives, `/readyz` once the engine has run a tick (and no longer once the engine is unusable).
SIGTERM (through uvicorn) stops accepting, closes every session with 1001 and stops the engine loop after
its tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from duo.engine import Backbone, Engine, EngineConfig, EngineLoop, load_backbone
from duo.files import package_data

from . import auth, server_events
from .metrics import Metrics
from .protocol import BETA_SUBPROTOCOL
from .realtime import RealtimeSession
from .settings import Settings
from .speech import SpeechServices

log = logging.getLogger(__name__)
STATIC_DIR = package_data("duo.server", "static")


class Server:
    """What the app holds: the engine loop shared by every session, speech services, counters."""

    def __init__(self, settings: Settings, backbone: Backbone | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.keys = settings.keys()
        self.speech = SpeechServices(settings.asr_model, settings.tts)
        self.backbone = backbone
        self.loop: EngineLoop | None = None
        self.sessions: set[RealtimeSession] = set()
        self.ready = asyncio.Event()
        self.closing = False

    async def start(self) -> None:
        if self.backbone is None:
            s = self.settings
            adapter = None if s.adapter == "none" else s.adapter
            self.backbone = await asyncio.to_thread(load_backbone, s.model, adapter=adapter, device=s.device,
                                                    dtype=s.dtype)
        engine = Engine(self.backbone, EngineConfig(max_sessions=2 * self.settings.max_sessions + 1))
        if self.settings.warmup:
            await asyncio.to_thread(engine.warmup)
        self.loop = EngineLoop(engine, on_tick=lambda s, t: self.metrics.on_tick(s, t.forward_passes, t.sessions,
                                                                                  t.tokens))
        self.loop.start()
        self.ready.set()
        log.info("event=ready model=%s device=%s", self.backbone.name, self.backbone.device)

    def status(self) -> str:
        """ready, loading, closing, or broken (the engine can serve no one: see `broken`)."""
        if self.closing:
            return "closing"
        if not self.ready.is_set():
            return "loading"
        return "ready" if self.loop is not None and self.loop.usable else "broken"

    def broken(self) -> dict[str, str]:
        reason = self.loop.engine.broken if self.loop is not None else None
        return {"reason": reason} if reason else {}

    async def stop(self) -> None:
        if self.closing:
            return
        self.closing = True
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.ws.close(1001, "server shutting down")
        if self.loop is not None:
            await self.loop.stop()
        await self.speech.close()


def create_app(settings: Settings, backbone: Backbone | None = None) -> FastAPI:
    auth.redact_logs()
    server = Server(settings, backbone)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(server.start())
        try:
            yield
        finally:
            await server.stop()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    app = FastAPI(title="duo", lifespan=lifespan)
    app.state.server = server

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        model = server.backbone.name if server.backbone else None
        status = server.status()
        return JSONResponse({"status": status, "model": model, **server.broken()}, 200 if status == "ready" else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        server.metrics.sessions.set(len(server.sessions))
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await serve_session(server, ws)

    if (STATIC_DIR / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="client")
    return app


async def serve_session(server: Server, ws: WebSocket) -> None:
    s = server.settings
    subprotocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        auth.check(server.keys, not s.loopback, ws.headers, ws.query_params, subprotocols, s.allowed_origins)
    except auth.AuthError as exc:
        server.metrics.sessions_refused.labels(exc.reason).inc()
        log.info("event=refused reason=%s client=%s", exc.reason, ws.client)
        await ws.close(1008, exc.reason)
        return
    accept: dict[str, Any] = {}
    if "realtime" in subprotocols:
        accept["subprotocol"] = "realtime"
    await ws.accept(**accept)
    beta = ws.headers.get("openai-beta", "").startswith("realtime=v1") or BETA_SUBPROTOCOL in subprotocols
    status = server.status()
    if status != "ready" or len(server.sessions) >= s.max_sessions:
        reason = {"loading": "not_ready", "ready": "session_limit"}.get(status, status)
        server.metrics.sessions_refused.labels(reason).inc()
        await ws.send_text(server_events.Error.of(reason, "the server cannot take another session now").wire_json(beta))
        await ws.close(1013, reason)
        return
    assert server.loop is not None
    session = RealtimeSession(ws, server.loop, server.speech, s, server.metrics, beta)
    server.sessions.add(session)
    server.metrics.sessions_total.inc()
    log.info("event=session_open session=%s", session.id)
    try:
        await session.run()
    finally:
        server.sessions.discard(session)
        log.info("event=session_closed session=%s", session.id)
        with contextlib.suppress(Exception):
            await ws.close(1000)

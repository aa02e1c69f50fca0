"""The FastAPI application: health, readiness, metrics, the demo page and `/v1/realtime`.

The model loads and warms up in the background after start-up: `/healthz` answers as soon as the
process lives, `/readyz` once the engine has run a tick (and no longer once the engine is unusable).
SIGTERM (through uvicorn) stops accepting, closes every session with 1001 and stops the engine loop after
its tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from duo.engine import Backbone, Engine, EngineConfig, EngineLoop, TensorParallel, default_model, load_backbone
from duo.files import package_data

from . import auth, server_events
from .connections import Guard, addr
from .load import Load
from .metrics import Metrics
from .protocol import BETA_SUBPROTOCOL
from .realtime import RealtimeSession
from .settings import Settings
from .speech import SpeechServices
from .transport import SlowClient

log = logging.getLogger(__name__)
STATIC_DIR = package_data("duo.server", "static")


def load_model(settings: Settings) -> Backbone:
    """The backbone the settings name; with `tensor_parallel` > 1, this rank's shard (every rank loads)."""
    parallel = TensorParallel.join(settings.tensor_parallel) if settings.tensor_parallel > 1 else None
    adapter = None if settings.adapter == "none" else settings.adapter
    model = settings.model or default_model(settings.device)
    return load_backbone(model, adapter=adapter, device=settings.device, dtype=settings.dtype, parallel=parallel)


def cpu_threads(setting: int | None, device: Any) -> int | None:
    """torch's CPU thread count for a server whose model runs on `device`; None leaves torch's default.

    With the model on a GPU, what torch runs on the CPU is the VAD: a batch of 32 ms frames per call, many calls
    a second. A pool of one thread per core makes each call wake and join every thread: on a 16-core GPU host,
    with the VAD then on the event loop, eight streams' frames kept every tick and transcript late behind them.
    """
    if setting is not None:
        return setting
    return 1 if getattr(device, "type", str(device)).startswith("cuda") else None


class Server:
    """What the app holds: the engine loop shared by every session, speech services, counters."""

    def __init__(self, settings: Settings, backbone: Backbone | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.keys = settings.keys()
        self.guard = Guard(settings, self.metrics)  # connection limits, shared by the uvicorn protocols
        self.logins = auth.LoginThrottle(settings.max_login_failures)
        self.load = Load(settings.overload_tick_s, settings.overload_recognition_s, self.metrics, self._overloaded)
        self.speech = SpeechServices(settings.asr_model, settings.tts, on_recognized=self.load.recognized,
                                     on_first_audio=self.metrics.tts_first_audio.observe,
                                     first_clause_words=settings.tts_first_clause_words,
                                     first_piece_words=settings.tts_first_piece_words,
                                     presynthesize=settings.tts_presynthesize, tts_threads=settings.tts_threads)
        self.backbone = backbone
        self.loop: EngineLoop | None = None
        self.sessions: set[RealtimeSession] = set()
        self.ready = asyncio.Event()
        self.closing = False

    async def start(self) -> None:
        if self.backbone is None:
            self.backbone = await asyncio.to_thread(load_model, self.settings)
        import torch

        if (threads := cpu_threads(self.settings.cpu_threads, self.backbone.device)) is not None:
            # for this thread and every thread that starts torch work after it (the VAD's starts with the first
            # audio); a thread that already ran parallel torch work keeps its pool
            torch.set_num_threads(threads)
        self.metrics.cpu_threads.set(torch.get_num_threads())
        log.info("event=cpu_threads threads=%d", torch.get_num_threads())
        engine = Engine(self.backbone, EngineConfig(max_sessions=2 * self.settings.max_sessions + 1))
        if self.settings.warmup:  # on CUDA this captures every graph the engine can need before /readyz says so
            await asyncio.to_thread(engine.warmup)
        # What lives now (the model, libraries, graphs) stays until `stop`: the collector's full passes skip
        # it, or each would stall a tick for every session by a fraction of a second.
        gc.freeze()
        self.loop = EngineLoop(engine, on_tick=self._ticked)
        self.loop.start()
        self.ready.set()
        log.info("event=ready model=%s device=%s", self.backbone.name, self.backbone.device)

    def _ticked(self, seconds: float, tick: Any) -> None:
        self.metrics.on_tick(seconds, tick.forward_passes, tick.sessions, tick.tokens, tick.eager, tick.captures)
        self.load.tick(seconds)

    def _overloaded(self, reason: str, speaking_only: bool) -> None:
        """Overload began: the sessions it slows are told before anything comes late."""
        for session in list(self.sessions):
            if speaking_only and not session.hears_audio:
                continue
            with contextlib.suppress(SlowClient):
                session.transport.error("overloaded", f"the server is falling behind ({reason}): replies and "
                                        "transcripts will come late", kind="server_error")

    def observe_kv(self) -> None:
        """The engine's KV pool now: two counters read without stopping the loop, each exact on its own."""
        if self.loop is not None:
            kv = self.loop.engine.kv
            free = kv.num_free
            self.metrics.kv_blocks.labels("free").set(free)
            self.metrics.kv_blocks.labels("used").set(kv.num_blocks - 1 - free)  # block 0 is scratch

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

    def refused_host(self, host: str, client: Any) -> None:
        self.metrics.sessions_refused.labels("host_not_allowed").inc()
        self.guard.note("refused", reason="host_not_allowed", host=repr(host[:64]), client=addr(client))

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
        gc.unfreeze()  # what this server held may be garbage now (another server in the process collects it)


def create_app(settings: Settings, backbone: Backbone | None = None) -> FastAPI:
    auth.redact_logs()
    server = Server(settings, backbone)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth.redact_logs()  # again: the log handlers uvicorn configured since
        server.guard.quiet_accept_errors(asyncio.get_running_loop())
        task = asyncio.create_task(server.start())
        try:
            yield
        finally:
            await server.stop()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # No /docs or /redoc (they load their scripts from a CDN); the schema only when asked for.
    app = FastAPI(title="duo", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.openapi else None)
    app.state.server = server
    if not server.keys:  # keyless: loopback names only, so no rebinding page gets through
        app.add_middleware(auth.HostCheck, allowed_hosts=settings.allowed_hosts, on_refused=server.refused_host)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        bb = server.backbone
        loaded = {"model": bb.name, "device": str(bb.device),
                  "dtype": str(next(bb.model.parameters()).dtype).removeprefix("torch.")} if bb else {"model": None}
        status = server.status()
        return JSONResponse({"status": status, **loaded, **server.broken()}, 200 if status == "ready" else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        server.metrics.sessions.set(len(server.sessions))
        server.observe_kv()
        server.load.overload()  # the overload gauge, also once the window has emptied
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
    address = ws.client.host if ws.client else ""
    if (wait := server.logins.retry_after(address)) > 0:
        server.metrics.sessions_refused.labels("too_many_failures").inc()
        log.info("event=refused reason=too_many_failures client=%s", ws.client)
        await ws.send_denial_response(PlainTextResponse(
            "too many failed API key checks from this address\n", 429, headers={"Retry-After": f"{wait:.0f}"}))
        return
    try:
        auth.check(server.keys, not s.loopback, ws.headers, ws.query_params, subprotocols, s.allowed_origins,
                   ws.url.scheme)
    except auth.AuthError as exc:
        if exc.reason == "invalid_api_key":
            server.logins.failed(address)
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
    overload = server.load.overload() if status == "ready" else None
    if status != "ready" or len(server.sessions) >= s.max_sessions or overload:
        reason = "overloaded" if overload else {"loading": "not_ready", "ready": "session_limit"}.get(status, status)
        server.metrics.sessions_refused.labels(reason).inc()
        message = f"the server is falling behind: {overload}" if overload else "the server cannot take a session now"
        await ws.send_text(server_events.Error.of(reason, message, kind="server_error").wire_json(beta))
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

"""Health, readiness, metrics, auth, limits and the official `openai` SDK against a live server."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from duo.cli import main
from duo.server.app import cpu_threads
from duo.server.auth import SUBPROTOCOL_PREFIX, redact_logs
from duo.server.settings import load_settings

from .helpers import connect, live_server


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_ready_and_metrics(tiny) -> None:
    with live_server(tiny) as s:
        assert _get(s.http + "/healthz") == (200, b'{"status":"ok"}')
        status, body = _get(s.http + "/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["status"] == "ready"
        assert ready["device"] == "cpu" and ready["dtype"] == str(tiny.model.dtype).removeprefix("torch.")

        async def talk() -> None:
            c = await connect(s.url)
            await c.configure(max_tokens=3, process_threshold=0.0)
            await c.say("hi")
            await c.until("response.done")
            await c.ws.close()

        asyncio.run(talk())
        text = _get(s.http + "/metrics")[1].decode()
        for name in ("duo_ticks_total", "duo_forward_passes_total", "duo_tick_seconds_bucket", "duo_batch_sessions",
                     'duo_state_decisions_total{state="process"}', "duo_reply_latency_seconds_count 1.0",
                     "duo_barge_in_latency_seconds", "duo_sessions_opened_total 1.0",
                     "duo_eager_forward_passes_total 0.0", "duo_graph_captures_total 0.0"):
            assert name in text, name


def test_auth_required_when_keys_are_set(tiny) -> None:
    with live_server(tiny, api_keys=["s3cret"], allowed_origins=["https://app.example"]) as s:
        async def attempts() -> None:
            for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer wrong"}},
                           {"additional_headers": {"Authorization": "Bearer s3cret", "Origin": "https://evil.example"}}):
                with pytest.raises(InvalidStatus):
                    await connect(s.url, **kwargs)
            ok = [
                await connect(s.url, additional_headers={"Authorization": "Bearer s3cret"}),
                await connect(s.url, subprotocols=["realtime", SUBPROTOCOL_PREFIX + "s3cret"],
                              origin="https://app.example"),
                await connect(s.url + "?api_key=s3cret"),
            ]
            assert ok[1].ws.subprotocol == "realtime"
            for c in ok:
                await c.ws.close()

        asyncio.run(attempts())
        assert 'duo_sessions_refused_total{reason="invalid_api_key"} 1.0' in _get(s.http + "/metrics")[1].decode()


def test_a_key_in_the_query_string_never_reaches_the_logs() -> None:
    redact_logs()
    logger, lines = logging.getLogger("uvicorn.error"), []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:  # uvicorn's own line for each accepted WebSocket
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/v1/realtime?model=duo&api_key=s3cret&x=1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert lines == ['127.0.0.1:5000 - "WebSocket /v1/realtime?model=duo&api_key=***&x=1" [accepted]']


def test_keys_are_mandatory_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUO_API_KEYS", raising=False)
    with pytest.raises(SystemExit, match="API keys"):
        main(["serve", "--host", "0.0.0.0"])


async def refused(url: str, code: str) -> None:
    """A new session is refused: an `error` with `code`, then close 1013 (try again later)."""
    ws = await websockets.connect(url)
    event = json.loads(await ws.recv())
    assert event["type"] == "error" and event["error"]["code"] == code
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 1013


def test_session_limit_and_idle_timeout(tiny) -> None:
    with live_server(tiny, max_sessions=2, idle_timeout_s=1.5) as s:
        async def run() -> None:
            a, b = await connect(s.url), await connect(s.url)
            await refused(s.url, "session_limit")
            await a.ws.close()
            assert (await b.until("error", timeout=10))["error"]["code"] == "idle_timeout"

        asyncio.run(run())


def test_openai_sdk_realtime_client(tiny) -> None:
    openai = pytest.importorskip("openai")
    with live_server(tiny, api_keys=["sdk-key"]) as s:
        async def run() -> str:
            client = openai.AsyncOpenAI(api_key="sdk-key", base_url=s.http + "/v1")
            async with client.realtime.connect(model="duo") as conn:
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                                   "audio": {"input": {"turn_detection": {
                                                       "type": "duo", "forecast_tokens": 1,
                                                       "process_threshold": 0.0}}}})
                await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hello"}]})
                await conn.response.create()  # a standard text item waits for the client to ask
                kinds = []
                async for event in conn:
                    kinds.append(event.type)
                    if event.type == "response.done":
                        assert event.response.status in ("completed", "incomplete")
                        return " ".join(kinds)
            return ""

        kinds = asyncio.run(asyncio.wait_for(run(), 120))
        assert {"session.created", "conversation.item.added", "response.output_text.delta"} <= set(kinds.split())
        assert "duo.input.state" not in kinds  # a text item is the client's turn: DUO does not judge it


def test_sigterm_closes_sessions_with_1001_and_exits(tiny_model_path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "duo.cli", "serve", "--model", str(tiny_model_path),
                             "--adapter", "none", "--port", str(port), "--device", "cpu"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (_alive(port) and _get(f"http://127.0.0.1:{port}/readyz")[0] == 200):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)

        async def run() -> int:
            c = await connect(f"ws://127.0.0.1:{port}/v1/realtime")
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await c.recv(timeout=20)
            return closed.value.rcvd.code

        assert asyncio.run(run()) == 1001
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down cleanly
    finally:
        proc.kill()


def _alive(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_client_that_stops_reading_is_closed_and_stalls_no_one(embedded) -> None:
    import socket

    with live_server(embedded, tts="espeak-ng", outbound_queue=16) as s:
        async def run() -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.connect(("127.0.0.1", s.port))
            stuck = await websockets.connect(s.url, sock=sock, max_queue=1)  # never reads again
            td = {"type": "duo", "process_threshold": 0.0, "forecast_tokens": 1}
            await stuck.send(json.dumps({"type": "session.update", "session": {
                "output_modalities": ["audio"], "max_output_tokens": 400, "audio": {"input": {"turn_detection": td}}}}))
            await stuck.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "tell me a very long story about dragons"}]}}))
            other = await connect(s.url)
            await other.configure(max_tokens=8, process_threshold=0.0)
            await other.say("hello")
            await other.until("response.done", timeout=60)
            for _ in range(300):
                if len(s.state.sessions) == 1:
                    break
                await asyncio.sleep(0.2)
            assert len(s.state.sessions) == 1  # the stuck one was closed, the other lives on
            await other.ws.close()

        asyncio.run(run())


def test_a_failing_engine_closes_its_sessions_with_an_error_then_readyz_says_broken(tiny) -> None:
    """A tick that fails ends the sessions it carried with `error` + 1011; once the engine keeps failing,
    `/readyz` answers 503 with the reason and new sessions are refused with 1013."""
    with live_server(tiny) as s:
        def broken(chunks, **kw):
            raise RuntimeError("device lost")

        s.state.loop.engine.runner.run = broken

        async def failing_turns() -> None:
            for _ in range(3):  # each session's first tick (its instructions' prefill) fails
                c = await connect(s.url)
                error = await c.until("error")
                assert error["error"]["code"] == "internal_error" and "device lost" in error["error"]["message"]
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await c.recv()
                assert closed.value.rcvd.code == 1011

        asyncio.run(failing_turns())
        status, body = _get(s.http + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "broken" and "device lost" in json.loads(body)["reason"]

        asyncio.run(refused(s.url, "broken"))


def test_torch_runs_on_one_cpu_thread_beside_a_gpu_model_unless_told() -> None:
    import torch

    assert cpu_threads(None, torch.device("cuda", 0)) == 1
    assert cpu_threads(None, torch.device("cpu")) is None  # a CPU model's math wants every core
    assert cpu_threads(3, torch.device("cuda")) == 3 and cpu_threads(2, "cpu") == 2
    assert load_settings(env={"DUO_CPU_THREADS": "4"}).cpu_threads == 4
    with pytest.raises(ValueError):
        load_settings(env={"DUO_CPU_THREADS": "0"})


def test_the_server_applies_its_cpu_threads_at_start(tiny) -> None:
    """Read where the VAD runs, the server's event loop (a thread of its own here): /metrics reports it."""
    import torch

    before = torch.get_num_threads()
    try:
        with live_server(tiny, cpu_threads=1) as s:
            assert "duo_cpu_threads 1.0" in _get(s.http + "/metrics")[1].decode()
    finally:  # the count is also what threads started later take: later tests' servers get the default back
        torch.set_num_threads(before)

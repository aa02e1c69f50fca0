"""Connections that misbehave below the protocol: never read, never finish a request, announce frames
beyond the limit, send invalid UTF-8, exhaust file descriptors. Live servers, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from duo.server.connections import WebSocketProtocol

from . import rawws
from .helpers import connect, live_server


def _get(url: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _metric(server, name: str) -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _dropped(server, reason: str) -> float:
    return _metric(server, f'duo_connections_dropped_total{{reason="{reason}"}}')


def _open_websockets(server) -> int:
    return sum(isinstance(c, WebSocketProtocol) for c in list(server.uvicorn.server_state.connections))


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.2)
    return condition()


@pytest.mark.parametrize("outbound_queue", [64, 1 << 20], ids=["queue-fills", "socket-stalls"])
def test_never_reading_clients_are_reset_and_never_outlive_their_session(tiny, outbound_queue: int) -> None:
    """Clients that send and never read: each is disconnected within seconds, its TCP connection gone with
    its session, so they never hold sockets (or kernel buffers) beyond `max_sessions`; new sessions work."""
    with live_server(tiny, max_sessions=2, outbound_queue=outbound_queue, write_timeout_s=2) as s:
        async def run() -> None:
            stuck = []
            for _ in range(2):
                sock, status = rawws.handshake(s.port, rcvbuf=4096)
                assert status == 101
                stuck.append(sock)
            flood = b"".join(rawws.frame(b'{"type": "session.update", "session": {}}') for _ in range(20_000))

            def send(sock: socket.socket) -> None:
                with contextlib.suppress(OSError):  # reset by the server: what this test waits for
                    sock.sendall(flood)  # every one answered with `session.updated`, none of them read

            senders = [asyncio.create_task(asyncio.to_thread(send, sock)) for sock in stuck]
            assert await _until(lambda: _open_websockets(s) == 0 and not s.state.sessions, 30)
            await asyncio.gather(*senders)
            reasons = ("queue_full", "write_timeout", "close_blocked")
            assert sum(_dropped(s, r) for r in reasons) >= 2
            fresh = [await connect(s.url), await connect(s.url)]  # the limit counts only what is served
            await fresh[0].configure(max_tokens=3, process_threshold=0.0)
            await fresh[0].say("hello")
            await fresh[0].until("response.done")
            extra, status = rawws.handshake(s.port)
            assert status == 101 and rawws.close_code(extra) == 1013
            for c in fresh:
                await c.ws.close()
            for sock in [*stuck, extra]:
                sock.close()

        asyncio.run(run())


def test_half_open_connections_are_closed_while_healthz_answers(tiny) -> None:
    """Sockets that send nothing or half a request head are closed at the header timeout; meanwhile and
    after, the server answers."""
    with live_server(tiny, header_timeout_s=2) as s:
        socks = [rawws.connect(s.port) for _ in range(60)]
        for sock in socks[::2]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the blank line
        assert _get(s.http + "/healthz") == 200
        deadline = time.monotonic() + 30
        assert all(rawws.closed_by_server(sock, deadline - time.monotonic()) for sock in socks)
        assert _get(s.http + "/healthz") == 200
        assert _dropped(s, "header_timeout") == 60
        for sock in socks:
            sock.close()


def test_at_the_connection_cap_the_longest_waiting_is_evicted(tiny) -> None:
    """More idle sockets than `max_connections`: never more connections than the cap, and a real request
    still gets through (it evicts a socket that has sent nothing)."""
    with live_server(tiny, max_connections=20) as s:
        socks = [rawws.connect(s.port) for _ in range(40)]
        time.sleep(0.5)
        assert _get(s.http + "/healthz") == 200
        assert len(s.uvicorn.server_state.connections) <= 20
        assert _dropped(s, "evicted") >= 20
        for sock in socks:
            sock.close()


def test_a_frame_beyond_the_limit_is_refused_from_its_header(tiny) -> None:
    """A frame announcing more than `max_frame_bytes` closes the connection (1009) before its payload
    arrives: the server never buffers it. The server goes on."""
    with live_server(tiny, max_frame_bytes=64 * 1024) as s:
        sock, status = rawws.handshake(s.port)
        assert status == 101
        sock.sendall(rawws.frame(b"{" * 100, declared=2 << 20)[: 100])  # the header, and a little of it
        assert rawws.close_code(sock, timeout=30) == 1009
        sock.close()

        async def still_serving() -> None:
            c = await connect(s.url)
            await c.send("input_audio_buffer.clear")
            await c.until("input_audio_buffer.cleared")
            await c.ws.close()

        asyncio.run(still_serving())


def test_invalid_utf8_closes_1007_with_one_line_and_no_traceback(tiny) -> None:
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "duo")]
    with live_server(tiny) as s:
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.addHandler(handler)
            lg.setLevel(logging.INFO)
        try:
            sock, status = rawws.handshake(s.port)
            assert status == 101
            sock.sendall(rawws.frame(b'{"type": "\xff\xfe"}'))
            assert rawws.close_code(sock) == 1007
            sock.close()
            assert _dropped(s, "invalid_utf8") == 1
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.removeHandler(handler)
                lg.setLevel(level)
    assert not [r for r in lines if r.exc_info], [r.getMessage() for r in lines]
    assert any("invalid_utf8" in r.getMessage() for r in lines)


def test_out_of_file_descriptors_the_log_stays_small_and_the_server_recovers(tiny_model_path, tmp_path) -> None:
    """A server with few file descriptors and a cap set above them: accept() fails while sockets hold
    them all. One log line per interval, not per attempt; once the header timeout frees them, it serves."""
    import resource

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_file = tmp_path / "server.log"

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "duo.cli", "--log-level", "INFO", "serve", "--model", str(tiny_model_path),
             "--adapter", "none", "--device", "cpu", "--port", str(port), "--max-connections", "1000",
             "--header-timeout-s", "5"], stdout=out, stderr=subprocess.STDOUT, preexec_fn=few_fds,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log_file.read_text()[-2000:]
            try:
                if _get(f"http://127.0.0.1:{port}/readyz", timeout=2) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        socks = [rawws.connect(port) for _ in range(150)]  # the kernel's backlog takes what accept() cannot
        size_before = log_file.stat().st_size
        time.sleep(4)  # out of descriptors all along: asyncio retries accept() every second
        grown = log_file.stat().st_size - size_before
        for sock in socks:
            sock.close()
        socks.clear()
        recovered = time.monotonic() + 30
        while _get_or_zero(f"http://127.0.0.1:{port}/healthz") != 200:
            assert time.monotonic() < recovered
            time.sleep(0.3)
        text = log_file.read_text()
        assert grown < 1 << 20, grown
        assert "Traceback" not in text, text[-3000:]
        assert 1 <= text.count("event=accept_failed") <= 4, text[-3000:]
    finally:
        for sock in socks:
            sock.close()
        proc.kill()
        proc.wait(30)


def _get_or_zero(url: str) -> int:
    try:
        return _get(url, timeout=3)
    except OSError:
        return 0

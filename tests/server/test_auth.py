"""Keys, Host names and origins against a live server: keys never logged, DNS rebinding refused, failed
logins throttled, key files read as written, no docs pages by default."""

from __future__ import annotations

import asyncio
import http.client
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import InvalidStatus

from duo.server.auth import SUBPROTOCOL_PREFIX
from duo.server.settings import Settings

from . import rawws
from .helpers import connect, live_server

KEY = "k3y-Zq81-never-logged"


def _status(port: int, path: str, host: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": host} if host else {})
    status = conn.getresponse().status
    conn.close()
    return status


@contextmanager
def _every_log_line(level: int) -> Iterator[list[str]]:
    """Every record of the server's loggers at `level`, as its handlers would write it."""
    lines: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "duo", "websockets")
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    for lg in loggers[:2] + loggers[3:4]:  # where records end up (uvicorn's loggers do not propagate)
        lg.addHandler(handler)
    try:
        yield lines
    finally:
        for lg, lvl in zip(loggers, saved, strict=True):
            lg.setLevel(lvl)
            lg.removeHandler(handler)


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG], ids=["INFO", "DEBUG"])
def test_keys_never_reach_the_log(tiny, level: int) -> None:
    """The key in every form a client can send it, accepted and refused, at INFO and DEBUG."""
    with live_server(tiny, api_keys=[KEY]) as s:
        async def attempts() -> None:
            good = [
                await connect(s.url, additional_headers={"Authorization": f"Bearer {KEY}"}),
                await connect(s.url, subprotocols=["realtime", SUBPROTOCOL_PREFIX + KEY]),
                await connect(s.url + f"?model=duo&api_key={KEY}"),
                await connect(s.url + f"?api%5Fkey={KEY}"),  # decoded by the server as `api_key`
            ]
            for c in good:
                await c.ws.close()
            for bad in ({"additional_headers": {"Authorization": f"Bearer {KEY}x"}},
                        {"subprotocols": [SUBPROTOCOL_PREFIX + KEY + "x"]}):
                with pytest.raises(InvalidStatus):
                    await connect(s.url, **bad)
            with pytest.raises(InvalidStatus):
                await connect(s.url + f"?api%5fkey={KEY}y")

        with _every_log_line(level) as lines:
            asyncio.run(attempts())
            assert _status(s.port, f"/healthz?api_key={KEY}") == 200
    assert lines and any("/v1/realtime" in line for line in lines)  # the log did see every attempt
    leaked = [line for line in lines if KEY in line]
    assert not leaked, leaked


def test_dns_rebinding_is_refused_without_keys(tiny) -> None:
    """Keyless loopback server: a page at evil.example resolving to 127.0.0.1 (Host and Origin both its
    own) is refused on WebSocket and HTTP; loopback names, and the names `allowed_hosts` lists, are served."""
    with live_server(tiny, allowed_hosts=["duo.internal"]) as s:
        sock, status = rawws.handshake(s.port, host=f"evil.example:{s.port}",
                                       headers={"Origin": f"http://evil.example:{s.port}"})
        sock.close()
        assert status == 403
        assert _status(s.port, "/healthz", host="evil.example") == 403
        assert _status(s.port, "/", host=f"evil.example:{s.port}") == 403
        for host in (f"localhost:{s.port}", f"127.0.0.1:{s.port}", f"[::1]:{s.port}", "duo.internal"):
            assert _status(s.port, "/healthz", host=host) == 200, host
        sock, status = rawws.handshake(s.port, host="duo.internal", headers={"Origin": "http://duo.internal"})
        sock.close()
        assert status == 101
        assert 'duo_sessions_refused_total{reason="host_not_allowed"} 3.0' in _metrics(s.port)


def test_origin_must_match_with_its_scheme(tiny) -> None:
    """A listed origin matches with its scheme (`http://app.example` is not `https://app.example`); the
    page's own origin is its host and port with a scheme at least as secure as the connection: over TLS
    (the proxy's forwarded scheme), an `http://` page of the same host is refused."""
    with live_server(tiny, allowed_origins=["https://app.example"]) as s:
        for origin, status, headers in (
                (f"http://127.0.0.1:{s.port}", 101, {}), (f"https://127.0.0.1:{s.port}", 101, {}),
                ("https://app.example", 101, {}), ("http://app.example", 403, {}),
                ("https://app.example:443", 101, {}), (f"http://127.0.0.1:{s.port}.evil", 403, {}),
                (f"http://127.0.0.1:{s.port}", 403, {"X-Forwarded-Proto": "https"}),
                (f"https://127.0.0.1:{s.port}", 101, {"X-Forwarded-Proto": "https"})):
            sock, got = rawws.handshake(s.port, headers={"Origin": origin, **headers})
            sock.close()
            assert got == status, (origin, headers)


def test_failed_logins_are_throttled_per_address(tiny) -> None:
    """After `max_login_failures` wrong keys, that address is refused (429, Retry-After), even with the
    right key; another address is not."""
    with live_server(tiny, api_keys=[KEY], max_login_failures=3) as s:
        for _ in range(3):
            sock, status = rawws.handshake(s.port, headers={"Authorization": "Bearer wrong"})
            sock.close()
            assert status == 403
        sock, status = rawws.handshake(s.port, headers={"Authorization": f"Bearer {KEY}"})
        sock.close()
        assert status == 429
        sock, status = rawws.handshake(s.port, headers={"Authorization": f"Bearer {KEY}"}, source="127.0.0.2")
        sock.close()
        assert status == 101
        assert 'duo_sessions_refused_total{reason="too_many_failures"} 1.0' in _metrics(s.port)


def test_key_file_comments_and_blank_lines_are_no_keys(tmp_path) -> None:
    path = tmp_path / "keys"
    path.write_text("first-key\n  # an indented comment\n\t# another\n\n   second-key  \n#last\n")
    assert Settings(api_keys_file=str(path)).keys() == {"first-key", "second-key"}
    path.write_text("a key with spaces\n")
    with pytest.raises(ValueError, match="letters, digits"):
        Settings(api_keys_file=str(path)).keys()


def test_no_docs_pages_by_default(tiny) -> None:
    with live_server(tiny) as s:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert _status(s.port, path) == 404, path
    with live_server(tiny, openapi=True) as s:
        assert _status(s.port, "/openapi.json") == 200
        assert _status(s.port, "/docs") == 404


def _metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    return body


"""Clients at the socket level, for what a well-behaved library never does: stop reading, send half a
request, announce a frame it never sends, send invalid UTF-8."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

import numpy as np


def connect(port: int, rcvbuf: int | None = None, source: str | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting, so the window the server sees is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def handshake(port: int, headers: dict[str, str] | None = None, host: str | None = None, **kw: object
              ) -> tuple[socket.socket, int]:
    """Open `/v1/realtime`; returns the socket (positioned after the response head) and the HTTP status."""
    sock = connect(port, **kw)  # type: ignore[arg-type]
    lines = ["GET /v1/realtime HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sock.settimeout(30)
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the head is consumed
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return sock, int(head.split(b" ", 2)[1]) if head else 0


def frame(payload: bytes, opcode: int = 0x1, declared: int | None = None) -> bytes:
    """A masked client frame; `declared` announces another length than `payload`'s."""
    n = len(payload) if declared is None else declared
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(payload))
    return head + mask + body.tobytes()


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next server frame: (opcode, payload)."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return b0 & 0x0F, exactly(n)


def close_code(sock: socket.socket, timeout: float = 30) -> int:
    """Read frames until the server's close; its code."""
    sock.settimeout(timeout)
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes (or resets) `sock` within `timeout`, reading (and dropping) what it sends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True
    return False

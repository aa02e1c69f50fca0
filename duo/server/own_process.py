"""duo's server in a process of its own: `duo serve` as a child on a free loopback port.

The duplex evaluation and the end-to-end bench use it so that the client's own work (playback, event
handling for hundreds of sessions) shares no interpreter with the server, as on a real host.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger(__name__)


@dataclass
class OwnProcess:
    url: str
    port: int
    info: dict[str, Any]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict[str, Any]:
        return self.info


@contextmanager
def own_process_server(ready_timeout_s: float = 900.0, **settings: Any) -> Iterator[OwnProcess]:
    """`duo serve` with these settings on 127.0.0.1:<free port>, in a child process, until the block ends."""
    with socket.socket() as probe:  # a free port: the child binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items() if value is not None]
    cmd = [sys.executable, "-m", "duo.cli", "serve", "--host=127.0.0.1", f"--port={port}", *flags]
    # its log goes to a file, read back only if it fails to start (a pipe nobody reads would fill and stall it)
    with tempfile.TemporaryFile("w+") as log_file:
        child = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        try:
            ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", child, log_file, ready_timeout_s)
            log.info("event=own_server_ready port=%d pid=%d", port, child.pid)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            # the model, device and dtype as loaded, not as asked for
            loaded = {key: ready.get(key) for key in ("model", "device", "dtype")}
            yield OwnProcess(url, port, {**settings, "url": url, "in_process": False, "own_process": True, **loaded})
        finally:
            child.terminate()  # SIGTERM: sessions get 1001 and the server exits
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_ready(url: str, child: subprocess.Popen[str], log_file: IO[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            log_file.seek(0)
            tail = log_file.read()[-3000:]
            raise RuntimeError(f"duo serve exited with {child.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read())
            if body.get("status") == "ready":
                return body
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"duo serve was not ready within {timeout_s:.0f} s")

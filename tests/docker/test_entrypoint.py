"""The image's build step (`duo prepare`) and entry point, run outside Docker as the image runs them.

`duo prepare` fills a fresh cache directory (the embedded model's conversion is copied in, as the slow part
that other tests already prove; the Whisper conversion, adapter, VAD and speech output are done for real),
then the entry point serves from that cache on every interface, with the hub switched off, like a container
started with no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from duo.cli import main
from duo.prepare import asr_step, model_step

from ..server.helpers import connect

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
KEY = "test-key-0123456789"
# The entry point runs `duo` from PATH, as in the image: that of the environment running the tests.
PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _prepare(cache: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("DUO_CACHE_DIR", str(cache))
        code = main(["prepare", "--json", *args])
    return code, json.loads(out.getvalue()), err.getvalue()


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def prepared(embedded_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    cache = tmp_path_factory.mktemp("duo-cache")
    shutil.copytree(embedded_path, cache / "models" / embedded_path.name)
    code, report, err = _prepare(cache, "--asr", "tiny.en")
    assert code == 0, (report, err)
    return cache, report


def test_prepare_fills_the_cache_and_checks_every_asset(prepared: tuple[Path, dict[str, Any]]) -> None:
    cache, report = prepared
    steps = {s["name"]: s for s in report["steps"]}
    assert report["ok"] and report["cache_dir"] == str(cache)
    assert [s["status"] for s in report["steps"]] == ["cached", "ok", "converted", "ok", "ok"]
    assert list(steps) == ["model", "adapter", "asr:tiny.en", "vad", "tts"]
    assert steps["model"]["path"].startswith(str(cache / "models"))
    assert steps["asr:tiny.en"]["path"].startswith(str(cache / "whisper"))
    assert (Path(steps["adapter"]["path"]) / "adapter_config.json").is_file()
    assert "+smollm2-135m-instruct" in steps["adapter"]["detail"]  # the adapter was merged
    assert "speaks" in steps["tts"]["detail"]

    before = _snapshot(cache)
    with pytest.MonkeyPatch.context() as mp:  # run again, the conversions are reused as they are
        mp.setenv("DUO_CACHE_DIR", str(cache))
        assert model_step(None) == ("cached", steps["model"]["detail"], steps["model"]["path"])
        assert asr_step("tiny.en") == ("cached", steps["asr:tiny.en"]["detail"], steps["asr:tiny.en"]["path"])
    assert _snapshot(cache) == before


def test_prepare_reports_each_failure_and_fails(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    code, report, err = _prepare(tmp_path / "cache", "--model", str(not_a_model), "--asr", "none",
                                 "--tts", "no-such-voice")
    steps = {s["name"]: s for s in report["steps"]}
    assert code == 1 and not report["ok"]
    assert steps["model"]["status"] == "failed" and "no config.json" in steps["model"]["detail"]
    assert steps["adapter"]["status"] == "skipped"
    assert steps["tts"]["status"] == "failed" and "no-such-voice" in steps["tts"]["detail"]
    assert "failed: model, tts" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _readyz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env={**os.environ, "DUO_PORT": str(port)},
                          capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def _container(cache: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUO_")}
    env.update(DUO_CACHE_DIR=str(cache), DUO_HOST="0.0.0.0", DUO_PORT=str(port), DUO_API_KEYS=KEY,
               DUO_MAX_SESSIONS="2", DUO_LOG_LEVEL="INFO", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1", PATH=PATH)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_entrypoint_serves_from_the_prepared_cache_offline(prepared: tuple[Path, dict[str, Any]],
                                                          tmp_path: Path) -> None:
    cache, _ = prepared
    before = _snapshot(cache)
    port, log = _free_port(), tmp_path / "serve.log"
    with _container(cache, port, log) as proc:
        deadline = time.monotonic() + 180
        while _readyz(port) != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        health = _healthcheck(port)
        assert health.returncode == 0 and health.stdout.strip() == "ready", health
        assert _healthcheck(_free_port()).returncode == 1  # nothing listening there

        async def talk() -> None:
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            with pytest.raises(InvalidStatus):  # every interface: keys are required
                await connect(url)
            client = await connect(url, additional_headers={"Authorization": f"Bearer {KEY}"})
            await client.configure(max_tokens=3, process_threshold=0.0)
            await client.say("hello")
            await client.until("response.done", timeout=120)
            await client.ws.close()

        asyncio.run(asyncio.wait_for(talk(), 180))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "duo_sessions_opened_total 1.0" in r.read().decode()

        proc.send_signal(signal.SIGTERM)  # docker stop
        assert proc.wait(60) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "event=ready model=embedded:smollm2-135m-instruct+smollm2-135m-instruct" in text
    assert "gguf_convert" not in text and "whisper_convert" not in text
    assert _snapshot(cache) == before  # served read-only from what the build prepared


def test_entrypoint_passes_flags_to_serve_and_runs_other_commands() -> None:
    env = {**os.environ, "DUO_HOST": "0.0.0.0", "PATH": PATH}

    def run(*args: str) -> str:
        done = subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done
        return done.stdout

    assert "--max-sessions" in run("--help") and "--max-sessions" in run("serve", "--help")
    assert run("sh", "-c", 'echo "$DUO_HOST"').strip() == "0.0.0.0"
    assert "convert and check" in run("duo", "--help")

"""duo as users install it: a wheel, installed non-editable into a fresh virtual environment, serves the demo
page and loads the embedded model with its shipped adapter, with no source checkout in sight."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, timeout=300)
    (path,) = out.glob("duo-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh environment holding only the wheel; its dependencies are read from this environment's
    site-packages (added as a plain path, so the checkout's editable-install hook there never runs)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(subprocess.check_output([root / "bin" / "python", "-c", "import sysconfig; "
                                         "print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    return root


def test_the_wheel_carries_the_page_and_the_adapters(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"duo/server/static/index.html", "duo/server/static/js/app.js"} <= names
    for model in ("smollm2-135m-instruct", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"):
        assert {f"duo/assets/adapters/{model}/adapter_model.safetensors",
                f"duo/assets/adapters/{model}/adapter_config.json"} <= names, model
    assert "duo/training/data/replies.jsonl.gz" in names
    assert not any(n.startswith(("engine/", "server/", "tests/")) for n in names)


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path) -> None:
    where = subprocess.check_output([venv / "bin" / "python", "-c", "import duo.server.app as a; print(a.__file__)"],
                                    text=True, cwd=venv).strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(REPO)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(venv: Path, embedded_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([venv / "bin" / "duo", "serve", "--port", str(port), "--tts", "none"], cwd=venv,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _get(url + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def test_the_installed_server_serves_the_page_and_the_adapted_model(served: str) -> None:
    status, ready = _get(served + "/readyz")
    assert status == 200, ready
    assert json.loads(ready)["model"].endswith("+smollm2-135m-instruct")  # the shipped adapter is merged
    status, page = _get(served + "/")
    assert status == 200 and b"<html" in page.lower() and b"js/app.js" in page
    assert _get(served + "/js/app.js")[0] == 200

"""The clients' own environments: one virtual environment per client, installed from PyPI, built once.

Each client pins what it needs in `requirements/NAME.txt` (their pins conflict with duo's and each other's:
openai-agents wants websockets 16, duo's SDK extra websockets 15). An environment is built on first use
under `.cache/client-envs/` (git-ignored; `DUO_CLIENT_ENVS` moves it), keyed by its requirements and the
Python version, so a CI run builds each once and later runs reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).parent / "requirements"


def cache_root() -> Path:
    return Path(os.environ.get("DUO_CLIENT_ENVS") or REPO / ".cache" / "client-envs")


def client_python(name: str) -> Path:
    """The interpreter of client `name`'s environment, built now if it is not there yet."""
    spec = (REQUIREMENTS / f"{name}.txt").read_bytes()
    key = hashlib.sha256(spec + sys.version.encode()).hexdigest()[:12]
    root = cache_root()
    env = root / f"{name}-{key}"
    python = env / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per environment
        if (env / ".ready").is_file():
            return python
        shutil.rmtree(env, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "-r", str(REQUIREMENTS / f"{name}.txt")], capture_output=True, text=True)
        if pip.returncode:
            raise RuntimeError(f"installing the {name} client failed:\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}")
        (env / ".ready").write_text(f"built in {time.monotonic() - started:.0f} s\n")
        print(f"client environment {name}: built in {time.monotonic() - started:.0f} s")
    return python

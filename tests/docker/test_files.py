"""The image's files pass their linters, and the build context holds everything the Dockerfile uses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    """A linter from the test environment's own bin folder (where the dev extra installs it), else from PATH."""
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert path, f"{name} is not installed (it is in the dev extra: pip install -e '.[dev]')"
    return path


def _lint(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    result = _lint(_tool("hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /tmp && apt-get install curl\n")  # the linter does fail on findings
    assert _lint(_tool("hadolint"), "--no-color", str(bad)).returncode != 0


def test_entrypoint_passes_shellcheck_and_is_executable() -> None:
    entrypoint = REPO / "docker" / "entrypoint.sh"
    result = _lint(_tool("shellcheck"), "--shell=sh", str(entrypoint))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(entrypoint, os.X_OK)  # COPY keeps the mode the checkout has


def test_compose_file_follows_the_compose_spec_and_reserves_a_gpu(tmp_path: Path) -> None:
    compose = REPO / "docker" / "compose.yaml"
    result = _lint(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose))
    assert result.returncode == 0, result.stdout + result.stderr
    spec = yaml.safe_load(compose.read_text())
    duo, caddy = spec["services"]["duo"], spec["services"]["caddy"]
    device = duo["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert duo["restart"] == "unless-stopped" and duo["env_file"] == "duo.env"
    assert (compose.parent / duo["build"]["context"] / duo["build"]["dockerfile"]).is_file()
    assert caddy["profiles"] == ["tls"] and caddy["depends_on"]["duo"]["condition"] == "service_healthy"
    for mount in caddy["volumes"]:
        source = mount.split(":")[0]
        assert not source.startswith(".") or (compose.parent / source).is_file(), mount
    assert (compose.parent / "duo.env.example").is_file()
    bad = tmp_path / "compose.yaml"  # the schema check does catch a mistake
    bad.write_text(compose.read_text().replace("capabilities: [gpu]", "capabilities: gpu"))
    assert _lint(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)).returncode != 0


def _in_context(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Whether `path` reaches the build context under .dockerignore's rules (the last match wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for keep, pattern in rules:
        if any(fnmatch(p, pattern) for p in prefixes):
            included = keep
    return included


def test_build_context_holds_every_package_and_file_the_image_uses() -> None:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, line.lstrip("!").strip().rstrip("/")))
    dockerfile = (REPO / "Dockerfile").read_text()
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    needed = ["pyproject.toml", "README.md", *(p.rstrip("*") for p in find["include"])]
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        needed += [src for src in line.split()[:-1] if not src.startswith("--")]
    assert "docker/entrypoint.sh" in needed and "docker/healthcheck.py" in needed
    for path in needed:
        assert (REPO / path).exists(), path
        assert _in_context(f"{path}/x.py" if (REPO / path).is_dir() else path, rules), f"{path} is left out"
    for path in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "duo/engine/__pycache__/x.pyc"):
        assert not _in_context(path, rules), f"{path} would be sent"

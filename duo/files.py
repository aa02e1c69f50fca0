"""Where duo's files live: its own package data, data-only packages, and the per-user cache.

The lowest layer: the engine, the audio front end and the tools all find files through here, so a
checkout, an editable install and a wheel resolve them the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path


def cache_root() -> Path:
    """`$DUO_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/duo`: converted models, built once per user."""
    base = os.environ.get("DUO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "duo"
    )
    return Path(base)


def package_data(package: str, *parts: str) -> Path:
    """A file or folder shipped inside one of duo's own packages (`package_data("duo", "assets")`)."""
    return Path(str(resources.files(package).joinpath(*parts)))


def installed_package(package: str) -> Path | None:
    """The folder of an installed (data-only) package, or None if it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over the files' concatenation, so split parts hash as the file they join into."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()

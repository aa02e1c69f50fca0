"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from duo.engine import paged_decode


@pytest.fixture(params=["tiny", "embedded"])
def backbone(request: pytest.FixtureRequest):
    """Each exactness proof runs on a tiny random-config Llama and on the embedded default."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def interpreted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Triton kernels on CPU tensors, through Triton's interpreter (tests/conftest.py chooses it where no GPU is)."""
    if not paged_decode.interpreted():
        pytest.skip("Triton's interpreter is chosen only where no CUDA device is (the GPU tests run there)")
    monkeypatch.setattr(paged_decode, "ON_CPU", True)
    yield

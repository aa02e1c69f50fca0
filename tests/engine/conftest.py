"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["tiny", "embedded"])
def backbone(request: pytest.FixtureRequest):
    """Each exactness proof runs on a tiny random-config Llama and on the embedded default."""
    return request.getfixturevalue(request.param)

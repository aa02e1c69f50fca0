"""A failed tick costs the sessions it carried; a device error, or failures in a row, break the engine."""

from __future__ import annotations

import pytest
import torch

from duo.engine.health import MAX_FAILED_TICKS, Health


def test_failures_in_a_row_break_the_engine_and_a_good_tick_forgives_them() -> None:
    health = Health()
    for _ in range(MAX_FAILED_TICKS - 1):
        health.failed(RuntimeError("bad row"))
    assert health.broken is None
    health.ok()
    for _ in range(MAX_FAILED_TICKS - 1):
        health.failed(RuntimeError("bad row"))
    assert health.broken is None  # the count started again
    health.failed(RuntimeError("bad row"))
    assert health.broken is not None and f"{MAX_FAILED_TICKS} ticks failed in a row" in health.broken
    assert "RuntimeError: bad row" in health.broken


@pytest.mark.skipif(getattr(torch, "AcceleratorError", None) is None, reason="this torch has no AcceleratorError")
def test_one_device_error_breaks_the_engine() -> None:
    health = Health()
    health.failed(torch.AcceleratorError("an illegal memory access was encountered"))
    assert health.broken is not None and health.broken.startswith("device error")

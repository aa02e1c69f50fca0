"""Whether the engine can still serve anyone.

A failed tick costs the sessions it carried, and the engine goes on; a device error, or several failed ticks
in a row, mean the next tick would fail too, so the engine is `broken` and the server stops saying ready.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
MAX_FAILED_TICKS = 3  # failed ticks in a row after which the engine counts as broken


class Health:
    def __init__(self) -> None:
        self.failed_ticks = 0  # in a row
        self.broken: str | None = None  # why the engine can serve no one, once it cannot

    def ok(self) -> None:
        """A tick ran."""
        self.failed_ticks = 0

    def failed(self, exc: BaseException) -> None:
        """A tick, or the work around it, failed with `exc`."""
        self.failed_ticks += 1
        accelerator = getattr(torch, "AcceleratorError", None)
        if accelerator is not None and isinstance(exc, accelerator):
            self.broken = f"device error: {exc}"
        elif self.failed_ticks >= MAX_FAILED_TICKS:
            self.broken = f"{self.failed_ticks} ticks failed in a row, the last with {type(exc).__name__}: {exc}"
        if self.broken is not None:
            log.error("event=engine_broken reason=%r", self.broken)

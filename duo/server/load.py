"""Whether the server keeps up: recent engine ticks and speech recognition, against their limits.

Overload is said, never silent: while ticks or recognition fall behind, new sessions are refused (1013,
`overloaded`, with the figures), and the sessions it slows down are told once, with an `error`, when it
begins — before their replies or transcripts come late.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from .metrics import Metrics

log = logging.getLogger(__name__)

WINDOW_S = 5.0  # recent means: what happened in the last this many seconds
MIN_TICKS = 3  # one long tick (a lone prefill) is not falling behind; slow ticks back to back are


class _Window:
    def __init__(self) -> None:
        self._items: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))
        self._sum += value

    def mean(self, now: float, least: int = 1) -> float | None:
        """The mean of the window's values, None with fewer than `least` of them."""
        while self._items and now - self._items[0][0] > WINDOW_S:
            self._sum -= self._items.popleft()[1]
        return self._sum / len(self._items) if len(self._items) >= max(1, least) else None


class Load:
    """Fed every tick and every recognized slice; `overload()` says why the server is behind, or None."""

    def __init__(self, tick_limit_s: float, recognition_limit_s: float, metrics: Metrics,
                 on_overload: Callable[[str, bool], None]) -> None:
        self.tick_limit_s, self.recognition_limit_s = tick_limit_s, recognition_limit_s
        self.metrics, self.on_overload = metrics, on_overload
        self._ticks, self._recognitions = _Window(), _Window()
        self._told: str | None = None  # the kind of overload sessions were last told about

    def tick(self, seconds: float) -> None:
        self._ticks.add(time.monotonic(), seconds)
        self._check()

    def recognized(self, seconds: float) -> None:
        self.metrics.recognition_seconds.observe(seconds)
        self._recognitions.add(time.monotonic(), seconds)
        self._check()

    def overload(self) -> str | None:
        kind = self._kind()
        self.metrics.overloaded.set(kind is not None)
        return None if kind is None else self._describe(kind)

    def _kind(self) -> str | None:
        now = time.monotonic()
        tick, recognition = self._ticks.mean(now, MIN_TICKS), self._recognitions.mean(now)
        if tick is not None and tick > self.tick_limit_s:
            return "ticks"
        if recognition is not None and recognition > self.recognition_limit_s:
            return "recognition"
        return None

    def _describe(self, kind: str) -> str:
        now = time.monotonic()
        if kind == "ticks":
            return (f"engine ticks take {self._ticks.mean(now) or 0:.3g} s on average over the last {WINDOW_S:g} s "
                    f"(limit {self.tick_limit_s:g} s)")
        return (f"recognizing a slice of speech takes {self._recognitions.mean(now) or 0:.3g} s on average over "
                f"the last {WINDOW_S:g} s (limit {self.recognition_limit_s:g} s)")

    def _check(self) -> None:
        kind = self._kind()
        self.metrics.overloaded.set(kind is not None)
        if kind is not None and kind != self._told:
            reason = self._describe(kind)
            log.warning("event=overloaded reason=%r", reason)
            self.on_overload(reason, kind == "recognition")  # recognition slows only the sessions that speak
        elif kind is None and self._told is not None:
            log.info("event=overload_over")
        self._told = kind

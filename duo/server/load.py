"""Whether the server keeps up: recent engine ticks and speech recognition, against their limits.

Overload is said, never silent: while ticks or recognition fall behind, new sessions are refused (1013,
`overloaded`, with the figures), and the sessions it slows are told with an `error` when it begins (again
at most every `TELL_EVERY_S` while it lasts), before their replies or transcripts come late.

Ticks fall behind when they are slower than the limit on average over the last `TICK_WINDOW_S`, and
there is more than one long tick to show it: at least `MIN_TICKS` of them, or ticks filling most of the
window. A lone long tick (a prefill on an idle engine) is no overload. Recognition falls behind when a
slice takes longer than its limit on average over `RECOGNITION_WINDOW_S` (slices come every couple of
seconds per speaker, and one that takes 20 s says as much as many).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

from .metrics import Metrics

log = logging.getLogger(__name__)

TICK_WINDOW_S = 5.0
RECOGNITION_WINDOW_S = 30.0
MIN_TICKS = 3
BUSY_SHARE = 0.8  # ... or ticks that took this share of the window
TELL_EVERY_S = 30.0


class _Window:
    """Values observed over the last `span_s` seconds."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._items: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))
        self._sum += value

    def stats(self, now: float) -> tuple[int, float]:
        """How many values, and their sum."""
        while self._items and now - self._items[0][0] > self.span_s:
            self._sum -= self._items.popleft()[1]
        if not self._items:
            self._sum = 0.0
        return len(self._items), self._sum


class Load:
    """Fed every tick and every recognized slice; `overload()` says why the server is behind, or None."""

    def __init__(self, tick_limit_s: float, recognition_limit_s: float, metrics: Metrics,
                 on_overload: Callable[[str, bool], None]) -> None:
        self.tick_limit_s, self.recognition_limit_s = tick_limit_s, recognition_limit_s
        self.metrics, self.on_overload = metrics, on_overload
        self._ticks, self._recognitions = _Window(TICK_WINDOW_S), _Window(RECOGNITION_WINDOW_S)
        self._told: dict[str, float] = {}  # kind of overload -> when the sessions were last told of it

    def tick(self, seconds: float) -> None:
        self._ticks.add(time.monotonic(), seconds)
        self._check()

    def recognized(self, seconds: float) -> None:
        self.metrics.recognition_seconds.observe(seconds)
        self._recognitions.add(time.monotonic(), seconds)
        self._check()

    def overload(self) -> str | None:
        """Why the server is behind now, with the figures; None while it keeps up."""
        now = time.monotonic()
        reason = self._ticks_behind(now) or self._recognition_behind(now)
        self.metrics.overloaded.set(reason is not None)
        return reason

    def _ticks_behind(self, now: float) -> str | None:
        n, total = self._ticks.stats(now)
        if not n or total / n <= self.tick_limit_s or (n < MIN_TICKS and total < BUSY_SHARE * TICK_WINDOW_S):
            return None
        return (f"engine ticks take {total / n:.3g} s on average over the last {TICK_WINDOW_S:g} s "
                f"(limit {self.tick_limit_s:g} s)")

    def _recognition_behind(self, now: float) -> str | None:
        n, total = self._recognitions.stats(now)
        if not n or total / n <= self.recognition_limit_s:
            return None
        return (f"recognizing a slice of speech takes {total / n:.3g} s on average over the last "
                f"{RECOGNITION_WINDOW_S:g} s (limit {self.recognition_limit_s:g} s)")

    def _check(self) -> None:
        now = time.monotonic()
        for kind, reason in (("ticks", self._ticks_behind(now)), ("recognition", self._recognition_behind(now))):
            if reason is not None and now - self._told.get(kind, -math.inf) >= TELL_EVERY_S:
                self._told[kind] = now
                log.warning("event=overloaded reason=%r", reason)
                self.on_overload(reason, kind == "recognition")  # recognition slows only the sessions that speak
        self.overload()

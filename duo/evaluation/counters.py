"""The server's own counts of DUO's early turn-taking, over a run: early closes, how many the speaker went on
from, and the replies (and their tokens) withdrawn unheard.

None of this reaches a client (a withdrawn reply sends nothing), so it is read from the server's Prometheus
counters (`GET /metrics`, no key needed) before and after: per run when runs do not overlap, and over the
whole evaluation always. Only DUO's turn detection closes early or holds replies; `server_vad` adds nothing.
A count is taken when the server makes it, so one the server makes after the run's socket closed (a reply
withdrawn at its very end) goes to the next run; the evaluation-wide counts miss none.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

COUNTERS = {  # report name -> Prometheus sample
    "early_closes": "duo_early_closes_total",
    "early_closes_resumed": "duo_early_closes_resumed_total",
    "withdrawn_replies": "duo_withdrawn_replies_total",
    "discarded_tokens": "duo_speculative_tokens_discarded_total",
}


def metrics_url(realtime_url: str) -> str:
    """`ws[s]://host:port/v1/realtime` -> `http[s]://host:port/metrics`."""
    parts = urlsplit(realtime_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def parse(text: str) -> dict[str, float]:
    """The counters of a Prometheus text exposition (absent ones count 0)."""
    wanted = {sample: name for name, sample in COUNTERS.items()}
    found = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        sample, _, value = line.partition(" ")
        if sample in wanted:
            found[wanted[sample]] = float(value.split()[0])
    return found


async def read(realtime_url: str, timeout_s: float = 10.0) -> dict[str, float] | None:
    """The server's counters now, or None when it does not export them."""

    def get() -> str:
        with urllib.request.urlopen(metrics_url(realtime_url), timeout=timeout_s) as response:
            return response.read().decode()

    try:
        return parse(await asyncio.to_thread(get))
    except (OSError, ValueError):
        return None


def delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    return {name: round(after[name] - before[name]) for name in COUNTERS}


def total(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts summed, with the share of early closes the speaker went on from (None without any)."""
    out: dict[str, Any] = {name: sum(int(c.get(name, 0)) for c in counts) for name in COUNTERS}
    closes = out["early_closes"]
    out["early_close_resumed_rate"] = round(out["early_closes_resumed"] / closes, 4) if closes else None
    return out

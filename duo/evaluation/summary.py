"""Figures over a set of judged runs: pass rates per expectation, takeover and interruption rates, latencies.

Each outcome is what `metrics.evaluate` made of one run, with its `expect`; the server's counters
(`counters.py`) are totalled over the runs they were read for alone.
"""

from __future__ import annotations

import math
from typing import Any

from . import counters


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def pct(p: float) -> float:
        k = (len(v) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    return {"n": len(v), "p50": round(pct(0.5), 3), "p90": round(pct(0.9), 3),
            "mean": round(sum(v) / len(v), 3), "min": round(v[0], 3), "max": round(v[-1], 3)}


def _rate(flags: list[bool]) -> dict[str, Any]:
    return {"n": len(flags), "rate": round(sum(flags) / len(flags), 4) if flags else None}


def summarize(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the outcomes of one mode (each outcome carries its `expect`)."""

    def of(kind: str) -> list[dict[str, Any]]:
        return [o for o in outcomes if o["expect"] == kind]

    measured = [o for o in outcomes if o["passed"] is not None]
    counted = [o["server_counters"] for o in outcomes if o.get("server_counters") is not None]
    per_kind = {k: {"n": len(of(k)), "measured": sum(o["passed"] is not None for o in of(k)),
                    "passed": sum(bool(o["passed"]) for o in of(k))} for k in
                ("respond", "no_response", "wait", "interrupt", "no_interrupt")}
    return {
        "scenarios": len(outcomes),
        "passed": sum(bool(o["passed"]) for o in measured),
        "measured": len(measured),
        "pass_rate": round(sum(bool(o["passed"]) for o in measured) / len(measured), 4) if measured else None,
        "per_expectation": per_kind,
        # a run that ended in an error (the server refused it, the connection broke) judged nothing
        "takeover_background": _rate([o["takeover"] for o in of("no_response") if "takeover" in o]),
        "takeover_pause": _rate([o["takeover"] for o in of("wait") if "takeover" in o]),
        "response_rate": _rate([bool(o["passed"]) for o in of("respond") if o["passed"] is not None]),
        "interrupt_success": _rate([bool(o["passed"]) for o in of("interrupt") if o["passed"] is not None]),
        "false_interruption": _rate([o["false_interruption"] for o in of("no_interrupt")
                                     if "false_interruption" in o]),
        "latency_token_s": stats([o["latency_token_s"] for o in outcomes if "latency_token_s" in o]),
        "latency_audio_s": stats([o["latency_audio_s"] for o in outcomes if "latency_audio_s" in o]),
        "transcript_s": stats([o["transcript_s"] for o in outcomes if "transcript_s" in o]),  # end -> words
        "barge_in_s": stats([o["barge_in_s"] for o in outcomes if "barge_in_s" in o]),
        # an interruption obeyed: its words' end -> the reply silenced, and -> the answer's first audio
        "silenced_s": stats([o["silenced_s"] for o in outcomes if "silenced_s" in o]),
        "interrupt_answer_audio_s": stats([o["latency_audio_s"] for o in of("interrupt")
                                           if "latency_audio_s" in o and o["passed"]]),
        "respond_answer_audio_s": stats([o["latency_audio_s"] for o in of("respond") if "latency_audio_s" in o]),
        "duck_s": stats([o["duck_s"] for o in outcomes if "duck_s" in o]),  # speech onset over a reply -> duck
        # over the runs the server's counters were read for alone (None when runs overlapped)
        "server_counters": {**counters.total(counted), "runs": len(counted)} if counted else None,
    }

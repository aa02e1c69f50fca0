"""The end-to-end bench: percentiles as numpy computes them, counts as reported, a server in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from duo.bench.e2e import Tally, main, percentile


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 101])
def test_percentile_matches_numpy(n: int) -> None:
    values = list(np.random.default_rng(n).exponential(0.3, n))
    for q in (0, 5, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-15)


def test_summary_reports_empty_latencies_as_none_and_counts_clean_rounds() -> None:
    t = Tally(rounds=5, misjudged=1, errors=1, barge_missed=1, reply=[0.1, 0.2, 0.4], barge=[0.05])
    s = t.summary()
    assert percentile([], 50) is None and s["answer_ms_p50"] is None and s["answer_samples"] == 0
    assert s["clean"] == 3 and s["reply_ms_p50"] == 200.0 and s["reply_ms_p95"] == 380.0
    assert s["barge_ms_p50"] == s["barge_ms_p95"] == 50.0


def test_the_bench_runs_against_a_server_in_its_own_process(tmp_path: Path) -> None:
    """`--own-process`: the clients talk to a `duo serve` child over loopback, and the tick counters come
    from that child's /metrics (its engine ran the round's ticks, none of them capturing a graph)."""
    out = tmp_path / "rows.jsonl"
    main(["--sessions", "1", "--rounds", "1", "--warmup-rounds", "0", "--slice-gap", "0.3", "--think", "0",
          "--spread", "0", "--max-tokens", "24", "--timeout", "120", "--own-process", "--json-out", str(out)])
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["sessions"] == 1 and row["rounds"] == 1 and row["errors"] == 0, row
    assert row["device"].endswith("server in its own process") and row["device"].startswith("cpu")
    assert row["ticks"] > 0 and row["sessions_per_tick_mean"] >= 1 and row["graph_captures"] == 0

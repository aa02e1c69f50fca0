"""The end-to-end bench's statistics: percentiles as numpy computes them, counts as reported."""

from __future__ import annotations

import numpy as np
import pytest

from duo.bench.e2e import Tally, percentile


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

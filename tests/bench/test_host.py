"""The host bench runs the real tick around its stubs: replies advance, slices are heard, nothing fails."""

from __future__ import annotations

import argparse

from duo.bench.host import Load, measure, stubbed_device, tiny_backbone


def test_the_stubbed_ticks_do_the_engines_work() -> None:
    backbone = tiny_backbone()
    args = argparse.Namespace(context=128, forecast_tokens=2, slice_every=6, ticks=8, attention="paged")
    with stubbed_device(backbone):
        row = measure(backbone, 4, args)
        load = Load(backbone, 3, 128, 2, 4)
        for _ in range(12):
            load.tick()
    assert row["tokens_mean"] >= 4 and row["host_ms_median"] > 0  # every session's reply advanced each tick
    assert all(s.reply is not None and s.reply.detok.num_tokens > 0 for s in load.sessions)
    assert len(load.engine.sessions) == 3 and load.engine.runner.slots.rewritten > 0  # planned in place

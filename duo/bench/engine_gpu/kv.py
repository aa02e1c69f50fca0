"""`kv`: the KV memory of a session that replies while it judges a slice, against one channel alone."""

from __future__ import annotations

import argparse

from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, Thresholds
from duo.engine.llm_engine import Engine
from duo.engine.loader import Backbone

from ..engine_cpu import BACKGROUND
from .report import emit
from .workload import QUESTION, history


def kv(backbone: Backbone, args: argparse.Namespace) -> list[dict]:
    """KV blocks a session holds while it replies and judges a slice, against one channel of its context."""
    engine = Engine(backbone, EngineConfig(initial_blocks=4096, max_blocks=4096, cuda_graphs=False))
    free = engine.kv.num_free
    s = engine.open_session(SessionConfig(thresholds=Thresholds(process=2.0, ignore=2.0),  # keep judging
                                          sampling=SamplingParams(max_new_tokens=4096, ignore_eos=True)),
                            history=history(backbone, args.context))
    s.push_slice(QUESTION, judge=False)
    s.respond()
    for _ in range(40):
        engine.step()
    s.push_slice(BACKGROUND, final=False)
    for _ in range(2):
        engine.step()
    held = free - engine.kv.num_free
    assert s.input is not None
    one_channel = -(-s.last.total_len // engine.kv.block_size)
    row = {"bench": "kv", "context": s.last.total_len, "input_tokens": len(s.input.seq),
           "blocks_held": held, "blocks_one_channel": one_channel, "ratio": round(held / one_channel, 3),
           "naive_copy_ratio": round((one_channel + -(-s.input.seq.total_len // engine.kv.block_size))
                                     / one_channel, 3),
           "bytes_per_token": engine.kv.bytes_per_token}
    s.close()
    return [emit(row)]

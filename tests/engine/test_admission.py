"""The KV check never plans more blocks than the pool can give, with or without its shortcut, and a fixed pool
(as on CUDA) serves the sessions that fit while the one that does not is closed with an error."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from duo.engine import events as ev
from duo.engine.channels import Need
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.kv_cache import KVCache
from duo.engine.llm_engine import Engine
from duo.engine.plan import Chunk
from duo.engine.scheduler import _fit_kv
from duo.engine.sequence import Sequence

from .helpers import run_until_idle, scripted


def _reference(chosen, kv: KVCache) -> set[str]:
    """The sessions refused: each in turn takes its blocks while the pool has them."""
    need: dict[str, int] = {}
    for s, chunk, _ in chosen:
        need[s.id] = need.get(s.id, 0) + chunk.new_blocks
    available, refused = kv.num_free + kv.max_blocks - kv.num_blocks, set()
    for sid, blocks in need.items():
        if blocks > available:
            refused.add(sid)
        else:
            available -= blocks
    return refused


def test_the_kv_check_and_its_shortcut_agree_and_never_overcommit() -> None:
    rng = np.random.default_rng(3)
    for trial in range(300):
        blocks = int(rng.integers(4, 40))
        kv = KVCache(num_layers=1, num_kv_heads=1, head_dim=2, block_size=16, num_blocks=blocks, max_blocks=blocks,
                     dtype=torch.float32, device=torch.device("cpu"))
        chosen = []
        for i in range(int(rng.integers(1, 8))):
            session = SimpleNamespace(id=f"s{i % 3}")
            cached = int(rng.integers(0, 40))
            seq = Sequence(kv, list(range(cached + 60)))
            if kv.num_free * 16 < cached:
                break
            seq.slots(0, cached)
            seq.num_cached = cached
            chosen.append((session, Chunk(seq, int(rng.integers(1, 60))), Need.OUTPUT))
        out = _fit_kv(chosen, kv)
        refused = _reference(chosen, kv)
        assert {s.id for s in out.refused} == refused, trial
        assert sum(c.new_blocks for _, c, _ in out.run) <= kv.num_free


def test_a_fixed_pool_serves_who_fits_and_closes_who_does_not(tiny) -> None:
    engine = Engine(tiny, EngineConfig(initial_blocks=28, max_blocks=28))
    def config() -> SessionConfig:  # a script of its own for each session
        return SessionConfig(forecast_tokens=1, thresholds=scripted(State.PROCESS, State.PROCESS),
                             sampling=SamplingParams(max_new_tokens=5))

    small = [engine.open_session(config(), session_id=f"small{i}") for i in range(2)]
    for s in small:
        s.push_slice("hello there")
    run_until_idle(engine)
    hungry = engine.open_session(config(), session_id="hungry")
    hungry.push_slice(" ".join(["word"] * (16 * (engine.kv.num_free + 2))))
    for s in small:
        s.push_slice("and then")
    events = run_until_idle(engine)
    assert engine.kv.num_blocks == 28  # it never grew
    assert [(e.session_id, e.code) for e in events if isinstance(e, ev.Error)] == [("hungry", "kv_full")]
    done = {e.session_id for e in events if isinstance(e, ev.ResponseDone)}
    assert done == {s.id for s in small}

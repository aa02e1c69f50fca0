"""Graph coverage: the buckets hold every tick `max_sessions` can plan, admission keeps prefills inside the
largest graph (exactly: the same replies and decisions as uncut prefills), and on a GPU the engine's warm-up
captures every bucket before serving, over a fixed KV pool."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from duo.engine import llm_engine
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.cuda_graphs import (
    PREFILL_ROWS,
    PREFILL_WIDTH,
    TABLE_CELLS,
    TOKENS,
    all_shapes,
    bucket,
    decode_buckets,
    key_buckets,
)
from duo.engine.llm_engine import Engine
from duo.engine.plan import TickShape, exact_shape
from duo.engine.scheduler import admit

from .helpers import run_until_idle, scripted

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (graph capture)")


@pytest.mark.parametrize("max_rows", [1, 100, 2048, 2049, 5000])
def test_every_row_count_up_to_the_limit_has_a_bucket(max_rows: int) -> None:
    decode, keys = decode_buckets(max_rows), key_buckets(20000)
    shapes = set(all_shapes(decode, keys))
    rng = np.random.default_rng(max_rows)
    for d in [*range(0, min(max_rows, 300) + 1), max_rows, *rng.integers(0, max_rows + 1, 50).tolist()]:
        p = int(rng.integers(0 if d else 1, PREFILL_ROWS + 1))
        shape = TickShape(int(d), p, int(rng.integers(2, PREFILL_WIDTH + 1)) if p else 0, int(rng.integers(1, 20001)))
        padded = bucket(shape, decode, keys)
        assert padded is not None and padded in shapes
        assert padded.decode >= shape.decode and padded.prefill >= shape.prefill and padded.keys >= shape.keys
    assert bucket(TickShape(3000, 0, 0, 10)) is None  # the module's default buckets end at 2,048 rows
    assert bucket(TickShape(3000, 0, 0, 10), decode_buckets(3000)) == TickShape(3072, 0, 0, 256)


def test_packed_buckets_hold_whatever_admission_lets_into_a_graph_and_pad_little() -> None:
    """In place, up to two rows a session and `PREFILL_ROWS` prefill rows of up to `PREFILL_WIDTH` tokens: one
    packed bucket holds them, the smallest, padding at most an eighth of the tokens (16 at the least)."""
    sessions = 1024
    graphs_tokens = decode_buckets(2 * sessions + PREFILL_ROWS * PREFILL_WIDTH, TOKENS)
    shapes = set(all_shapes(graphs_tokens, (0,)))
    assert len(shapes) < 100  # the warm-up captures them all
    rng = np.random.default_rng(0)
    for _ in range(2000):
        prefill = rng.integers(2, PREFILL_WIDTH + 1, int(rng.integers(0, PREFILL_ROWS + 1)))
        tokens = int(rng.integers(0 if len(prefill) else 1, 2 * sessions + 1)) + int(prefill.sum())
        padded = bucket(TickShape(tokens, 0, 0, 0), graphs_tokens, (0,))
        assert padded in shapes and padded.tokens == min(t for t in graphs_tokens if t >= tokens)
        assert padded.tokens - tokens <= max(16, tokens // 8)


def test_a_bounded_table_keeps_the_shortest_keys_for_every_row_count() -> None:
    decode, keys = decode_buckets(1024), key_buckets(8192)
    shapes = all_shapes(decode, keys, max_cells=200_000)
    assert all((s.decode + s.prefill) * s.keys <= 200_000 or s.keys == keys[0] for s in shapes)
    assert {s.decode for s in shapes} == set(decode)
    assert shapes[0].tokens * shapes[0].keys == max(s.tokens * s.keys for s in shapes)  # largest first


def test_in_place_the_shapes_have_no_key_dimension() -> None:
    """Rows read through the device slot table: one graph per (rows, prefill) bucket covers every context,
    where the gathered path's bound on the keys a tick may copy leaves long contexts eager."""
    decode, keys, cells = decode_buckets(2048), key_buckets(4096), 768 * 900 * 2
    gathered, in_place = set(all_shapes(decode, keys, cells)), set(all_shapes(decode, (0,)))
    assert len(in_place) == len(decode) - 1  # packed: a bucket per token count but the empty one
    for tick in (TickShape(2 * 768, 0, 0, 900), TickShape(2 * 700, 16, 32, 4000), TickShape(2048, 0, 0, 4000)):
        assert bucket(tick, decode, keys) not in gathered
        assert bucket(dataclasses.replace(tick, keys=0), decode, (0,)) in in_place
    assert all((s.decode + s.prefill) * s.keys <= TABLE_CELLS or s.keys == keys[0] for s in gathered)


def _talk(backbone, monkeypatch: pytest.MonkeyPatch, rows: int | None,
          width: int | None) -> tuple[list[tuple], list[TickShape]]:
    """Sessions whose slices and instructions are long prefills, under admission limits of a graph's size."""
    shapes: list[TickShape] = []

    def limited(work, *, budget, kv, **_):
        out = admit(work, budget=budget, kv=kv, rows=rows, width=width)
        shapes.append(exact_shape([c for _, c, _ in out.run]))
        return out

    engine = Engine(backbone, EngineConfig(max_tick_tokens=4096))
    sessions = []
    for i in range(5):
        config = SessionConfig(forecast_tokens=2, thresholds=scripted(State.INCOMPLETE, State.PROCESS),
                               sampling=SamplingParams(max_new_tokens=6), instructions="be brief " * (3 + 9 * i))
        sessions.append(engine.open_session(config, session_id=f"s{i}"))
    for i, s in enumerate(sessions):
        s.push_slice(" ".join(["the garden and the trains"] * (1 + 3 * i)), final=False)
    with monkeypatch.context() as m:
        m.setattr(llm_engine, "admit", limited)
        events = run_until_idle(engine)
        for s in sessions:
            s.push_slice("what time is it")
        events += run_until_idle(engine)
    seen = [(type(e).__name__, e.session_id, getattr(e, "delta", None), getattr(e, "state", None),
             getattr(e, "text", None)) for e in events]
    return seen, shapes


def test_prefills_cut_to_a_graphs_size_give_the_same_conversation(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, plain_shapes = _talk(tiny, monkeypatch, None, None)
    cut, cut_shapes = _talk(tiny, monkeypatch, 2, 8)
    assert max(s.prefill for s in plain_shapes) > 2 and max(s.width for s in plain_shapes) > 8  # a real cut
    assert all(s.prefill <= 2 and (s.width <= 8 or s.prefill == 0) for s in cut_shapes)
    assert len(cut_shapes) > len(plain_shapes)
    assert {e[0] for e in plain} >= {"StateDecided", "ResponseStarted", "TextDelta", "ResponseDone"}
    assert sorted(cut) == sorted(plain)  # same events per session; ticks may interleave sessions differently
    for sid in {e[1] for e in plain}:
        assert [e for e in cut if e[1] == sid] == [e for e in plain if e[1] == sid]


@cuda
@pytest.mark.gpu
def test_warmup_captures_every_bucket_and_serving_captures_none(tiny) -> None:
    tiny.model.to("cuda")
    try:
        engine = Engine(tiny, EngineConfig(max_sessions=6, max_context=512))
        assert engine.kv.max_blocks == engine.kv.num_blocks  # fixed: the graphs' pool never moves
        graphs = engine.runner.graphs
        assert graphs is not None
        engine.warmup()
        assert set(graphs.graphs) == set(graphs.shapes())
        captured, version = len(graphs.graphs), engine.kv.version
        sessions = [engine.open_session(SessionConfig(sampling=SamplingParams(max_new_tokens=8))) for _ in range(5)]
        for i, s in enumerate(sessions):
            s.push_slice(f"question number {i} about " + "the weather " * (4 * i))
        run_until_idle(engine)
        assert len(graphs.graphs) == captured and engine.kv.version == version
    finally:
        tiny.model.to("cpu")


@cuda
@pytest.mark.gpu
def test_the_capacity_bench_warms_counts_above_the_largest_bucket(embedded) -> None:
    from duo.bench.engine_gpu import Workload

    embedded.model.to("cuda")  # the bench's replies run to 4,096 tokens: a model with that much context
    try:
        w = Workload(embedded, 3, 64, 2, 2.0, growth=32)
        graphs = w.engine.runner.graphs
        assert graphs is not None
        graphs.decode = (0, 1, 2)  # buckets that end below the load: the bench must not crash, ticks run eagerly
        graphs._covered = set(graphs.shapes())
        w.warm_graphs()
        w.close()
    finally:
        embedded.model.to("cpu")

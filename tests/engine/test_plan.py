"""The vectorized planner lays a tick out exactly as the plain per-chunk loop does, over trees of channels that
fork, grow, roll back, re-attach and are released, with the slot rows served from each sequence's cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duo.engine.kv_cache import KVCache
from duo.engine.plan import Chunk, Step, TickPlan, TickShape, exact_shape, pack, plan_tick
from duo.engine.sequence import Sequence


def reference_plan(chunks: list[Chunk], shape: TickShape, rows_of: list[int] | None = None) -> dict[str, np.ndarray]:
    """The plan as one loop over the chunks, every slot row rebuilt from the ancestry (the old planner);
    `rows_of`: each chunk's row of a device slot table (then the plan holds no table, `shape.keys` 0, and
    is packed: chunks back to back, each token a row)."""
    d, p, w = shape.decode, shape.prefill, shape.width
    s = KVCache.SCRATCH
    out = {"ids": np.zeros(shape.tokens, np.int64), "positions": np.zeros(shape.tokens, np.int64),
           "write_slots": np.full(shape.tokens, s, np.int64), "token_rows": np.zeros(shape.tokens, np.int64),
           "table": np.full((d + p, shape.keys), s, np.int64),
           "key_len": np.ones(d, np.int64), "ctx": np.zeros(p, np.int64), "q_len": np.zeros(p, np.int64),
           "row_last": np.arange(d + p, dtype=np.int64), "rows": np.empty(len(chunks), np.int64)}
    nd = npre = at = 0  # decode rows, prefill rows, packed tokens so far
    for i, chunk in enumerate(chunks):
        seq, q = chunk.seq, chunk.n
        slots = np.concatenate(seq.key_slots(chunk.start + q))
        n = len(slots)
        if shape.packed:
            t, r = at, at + q - 1
            at += q
        elif q == 1:
            r = t = nd
            nd += 1
            out["key_len"][r] = n
        else:
            r, t = d + npre, d + npre * w
            out["ctx"][npre], out["q_len"][npre] = n - q, q
            npre += 1
        if shape.keys:
            out["table"][r, :n] = slots
        if rows_of is not None:
            out["token_rows"][t : t + q] = rows_of[i]
        out["ids"][t : t + q] = seq.tokens[chunk.start : chunk.start + q]
        out["positions"][t : t + q] = np.arange(n - q, n)
        out["write_slots"][t : t + q] = slots[n - q :]
        out["row_last"][r] = t + q - 1
        out["rows"][i] = r
    return out


def _kv(blocks: int = 512) -> KVCache:
    return KVCache(num_layers=1, num_kv_heads=1, head_dim=2, block_size=16, num_blocks=blocks, max_blocks=blocks,
                   dtype=torch.float32, device=torch.device("cpu"))


def _check(chunks: list[Chunk], shape: TickShape) -> TickPlan:
    ref = reference_plan(chunks, shape)  # allocates the blocks the tick writes, as the planner would
    plan = plan_tick(chunks, shape)
    for name in (*TickPlan.INPUTS, "rows"):
        assert np.array_equal(getattr(plan, name), ref[name]), name
    _check_in_place(chunks, shape)
    return plan


def _check_in_place(chunks: list[Chunk], shape: TickShape) -> None:
    """Read through a device slot table, the same tick has no table, is packed (one row per token, exactly
    its tokens or padded past them), and each token names its chunk's row."""
    rows_of = [3 + 2 * i for i in range(len(chunks))]
    exact = exact_shape(chunks, packed=True)
    assert exact == TickShape(sum(c.n for c in chunks), 0, 0, 0)
    for in_place in (exact, TickShape(shape.tokens, 0, 0, 0)):
        ref = reference_plan(chunks, in_place, rows_of)
        stale = np.full(Step(True, in_place, 0).size, -7, dtype=np.int64)
        plan = plan_tick(chunks, in_place, out=stale, rows_of=np.array(rows_of))
        assert plan.table.size == 0
        for name in (*TickPlan.INPUTS, "rows"):
            assert np.array_equal(getattr(plan, name), ref[name]), name
    with pytest.raises(ValueError, match="no prefill rows"):
        plan_tick(chunks, TickShape(exact.tokens, 1, 2, 0))


def _ran(chunks: list[Chunk]) -> None:
    for c in chunks:
        c.seq.num_cached += c.n


def test_a_tree_of_channels_plans_as_the_reference_tick_after_tick() -> None:
    rng = np.random.default_rng(1)
    kv = _kv()
    tok = lambda n: rng.integers(5, 900, n).tolist()  # noqa: E731
    root = Sequence(kv, tok(37))
    live = [root]
    for tick in range(60):
        # grow, fork mid-block, roll back, re-attach or release, as sessions do between ticks
        for seq in list(live):
            op = rng.integers(0, 10)
            if op < 5:
                seq.append(tok(1 if op < 4 else int(rng.integers(2, 40))))
            elif op == 5 and len(live) < 12 and seq.num_cached:
                child = Sequence(kv, tok(int(rng.integers(1, 20))), parent=seq,
                                 parent_len=int(rng.integers(1, seq.num_cached + 1)))
                live.append(child)
            elif op == 6 and seq.num_cached > 3:
                seq.truncate(int(rng.integers(1, seq.num_cached)))
                for other in live:  # what continued the cut part now continues what is left, prefilled again
                    if other.parent is seq and other.parent_len > len(seq):
                        other.reattach(len(seq))
                        _reattach_below(other, live)
            elif op == 7 and seq is not root and seq.refs == 1:
                live.remove(seq)
                seq.release()
        pending = [s for s in live if s.num_pending]
        if not pending:
            continue
        chunks = [Chunk(s, s.num_pending if rng.random() < 0.8 else max(1, s.num_pending // 2)) for s in pending]
        chunks = [c for c in chunks if _ancestry_cached(c.seq)]
        if not chunks:
            continue
        exact = exact_shape(chunks)
        padded = TickShape(exact.decode + tick % 3, exact.prefill + tick % 2, exact.width + 5, exact.keys + 30)
        _check(chunks, exact if tick % 2 else padded)
        _ran(chunks)


def _reattach_below(seq: Sequence, live: list[Sequence]) -> None:
    for other in live:
        if other.parent is seq:
            other.reattach()
            _reattach_below(other, live)


def _ancestry_cached(seq: Sequence) -> bool:
    """A chunk runs only once what it sees is in the pool (the engine's order guarantees it)."""
    return all(anc.num_cached >= n for anc, n in seq.ancestry())


def test_the_slot_cache_extends_by_a_block_and_follows_a_cut_ancestor() -> None:
    kv = _kv()
    root = Sequence(kv, list(range(30)))
    plan_tick([Chunk(root, 30)], TickShape(0, 1, 30, 30))
    root.num_cached = 30
    child = Sequence(kv, [1, 2, 3], parent=root, parent_len=20)
    first = child.visible_slots(3).copy()
    assert np.array_equal(first, np.concatenate(child.key_slots(3)))
    child.append(list(range(20)))  # past its first block: one more block, listed after the others
    assert np.array_equal(child.visible_slots(23), np.concatenate(child.key_slots(23)))
    assert np.array_equal(child.visible_slots(23)[:23], first)
    root.truncate(10)  # the root's second block goes back to the pool
    root.append(list(range(12)))
    child.reattach(15)
    assert np.array_equal(child.visible_slots(23), np.concatenate(child.key_slots(23)))
    child.release()
    assert not root.children and root.refs == 1


@pytest.mark.parametrize("graph", [True, False])
def test_a_plan_is_its_own_payload(graph: bool) -> None:
    kv = _kv()
    a, b = Sequence(kv, list(range(10, 31))), Sequence(kv, [5])
    out = np.full(5000, -7, dtype=np.int64)
    shape = TickShape(decode=4, prefill=2, width=32, keys=64)
    plan = plan_tick([Chunk(a, 21), Chunk(b, 1)], shape, out=out)
    step = Step(graph, shape, kv.num_blocks, 0 if graph else 2)
    flat = pack(plan, None if graph else plan.row_last[plan.rows])
    assert flat.size == step.size
    if graph:  # the very staging memory, no copy
        assert np.shares_memory(flat, out)
    assert (out[Step(True, shape, 0).size :] == -7).all()  # nothing written past the plan


def test_a_tree_of_sequences_is_freed_without_the_collector() -> None:
    """Children are held weakly: dropping a conversation frees its pool by reference counting alone."""
    import gc
    import weakref

    kv = _kv()
    root = Sequence(kv, list(range(20)))
    child = Sequence(kv, [1, 2], parent=root, parent_len=10)
    child.visible_slots(2)
    alive = weakref.ref(kv)
    gc.disable()
    try:
        del kv, root, child
        assert alive() is None
    finally:
        gc.enable()


def test_a_steps_header_and_layout_carry_its_rewrites_last() -> None:
    """What a tensor-parallel rank rebuilds from the header has the same layout, the rewrites at the end (a
    graph reads only the start of its payload)."""
    for step in (Step(True, TickShape(8, 2, 32, 0), 64, 0, 5), Step(False, TickShape(3, 1, 20, 128), 64, 4, 2)):
        again = Step.from_header(step.header())
        assert again == step and len(step.header()) == Step.HEADER
        names = [name for name, _ in step.layout()]
        assert names[-2:] == ["rewrite_at", "rewrite_slot"]
        assert step.size == Step(step.graph, step.shape, 64, step.keep).size + 2 * step.rewrites

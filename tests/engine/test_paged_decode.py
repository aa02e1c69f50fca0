"""The in-place paged decode kernel equals the gathered reference path: alone, in a tick, and in the engine.

On a CPU the kernel runs through Triton's interpreter (slow, so the shapes stay small); on a GPU the same
comparisons run compiled, in bf16.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from duo.engine import paged_decode as pd
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig
from duo.engine.kv_cache import KVCache
from duo.engine.llm_engine import Engine
from duo.engine.model_runner import ModelRunner
from duo.engine.plan import whole

from .helpers import full_tokens, reference_logits, rel_err, run_until_idle
from .test_model_runner import _tree

triton = pytest.importorskip("triton", reason="the paged kernel needs Triton (installed with the dev extra)")


def _gathered(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, key_len: torch.Tensor,
              scale: float) -> torch.Tensor:
    rows, heads, head_dim = q.shape
    kv_heads = k.shape[1]
    mask = (torch.arange(table.shape[1], device=table.device) < key_len[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q.view(rows, kv_heads, heads // kv_heads, head_dim),
                                         k[table].transpose(1, 2), v[table].transpose(1, 2),
                                         attn_mask=mask, scale=scale)
    return out.reshape(rows, heads, head_dim)


@pytest.mark.parametrize(("heads", "kv_heads", "head_dim"), [(4, 4, 16), (14, 2, 64), (9, 3, 32)])
@pytest.mark.parametrize("min_programs", [1, 10**6])  # one pass over the keys; keys cut into splits
def test_kernel_equals_the_gathered_reference(interpreted, monkeypatch: pytest.MonkeyPatch, heads: int,
                                              kv_heads: int, head_dim: int, min_programs: int) -> None:
    monkeypatch.setattr(pd, "MIN_PROGRAMS", min_programs)
    g = torch.Generator().manual_seed(heads)
    slots, rows, width = 3000, 4, 600
    k, v = torch.randn(slots, kv_heads, head_dim, generator=g), torch.randn(slots, kv_heads, head_dim, generator=g)
    table = torch.randint(1, slots, (rows, width), generator=g)
    key_len = torch.tensor([1, 64, 65, width])  # one key (a padded row), a block's edge, one past it, all
    q = torch.randn(rows, heads, head_dim, generator=g)
    expected = pd.splits_for(rows, kv_heads, width)
    assert (expected > 1) == (min_programs > 1)
    out = pd.paged_decode(q, k, v, table, key_len, head_dim**-0.5)
    assert out.shape == q.shape and torch.isfinite(out).all()
    assert rel_err(out, _gathered(q, k, v, table, key_len, head_dim**-0.5)) < 1e-5


def test_rows_spread_their_own_keys_over_splits_sized_for_a_wider_table(interpreted,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The device slot table is as wide as the context window: splits counted from its width each take a
    share of a row's own keys, whatever the row sees (here 1 to 700 keys of 4,096)."""
    monkeypatch.setattr(pd, "MIN_PROGRAMS", 10**6)
    g = torch.Generator().manual_seed(3)
    k, v = torch.randn(3000, 2, 16, generator=g), torch.randn(3000, 2, 16, generator=g)
    table = torch.randint(1, 3000, (3, 4096), generator=g)
    key_len = torch.tensor([700, 257, 1])
    q = torch.randn(3, 4, 16, generator=g)
    assert pd.splits_for(3, 2, 4096) == 4096 // pd.MIN_KEYS_PER_SPLIT  # 16 splits, most of them past row 0's keys
    out = pd.paged_decode(q, k, v, table, key_len, 0.25)
    assert rel_err(out, _gathered(q, k, v, table, key_len, 0.25)) < 1e-5


def test_keys_past_a_rows_length_are_never_read(interpreted) -> None:
    """What the table holds past `key_len` (another session's slots, say) changes nothing."""
    g = torch.Generator().manual_seed(1)
    k, v = torch.randn(500, 2, 16, generator=g), torch.randn(500, 2, 16, generator=g)
    q = torch.randn(2, 4, 16, generator=g)
    table = torch.randint(1, 400, (2, 128), generator=g)  # the visible keys; slots 400 on are another's
    key_len = torch.tensor([70, 3])
    a = pd.paged_decode(q, k, v, table, key_len, 0.25)
    table[0, 70:], table[1, 3:] = 450, 451
    k[450], v[451] = 1e4, -1e4
    assert torch.equal(a, pd.paged_decode(q, k, v, table, key_len, 0.25))


def test_prefill_tokens_read_their_rows_table_up_to_their_causal_limit(interpreted) -> None:
    """A prefill row's tokens as query rows over one table row: each equals its own row of the reference."""
    g = torch.Generator().manual_seed(2)
    k, v = torch.randn(800, 2, 16, generator=g), torch.randn(800, 2, 16, generator=g)
    table = torch.randint(1, 800, (2, 200), generator=g)
    rows_of = torch.tensor([0, 1, 1, 1, 1])  # a decode row, then four tokens of a prefill row at ctx 120
    key_len = torch.tensor([90, 121, 122, 123, 1])  # the last is a padded query: key 0 only
    q = torch.randn(5, 4, 16, generator=g)
    out = pd.paged_decode(q, k, v, table, key_len, 0.25, rows_of)
    assert rel_err(out, _gathered(q, k, v, table[rows_of], key_len, 0.25)) < 1e-5


def _runner(backbone, paged: bool) -> ModelRunner:
    kv = KVCache.for_model(backbone.model, block_size=16, num_blocks=64, max_blocks=64)
    return ModelRunner(backbone.model, kv, paged_attention=paged)


def test_a_tick_of_forks_and_prefills_gives_the_reference_logits(interpreted, tiny) -> None:
    paged, gathered = _runner(tiny, True), _runner(tiny, False)
    assert paged.paged and not gathered.paged
    a, b = _tree(paged), _tree(gathered)
    for _ in range(2):  # decode rows on a trunk and a channel forked mid-block, beside prefill rows
        la, lb = paged.run(whole(a)), gathered.run(whole(b))
        assert rel_err(la, lb) < 1e-5
        for seq in (*a, *b):
            seq.append([7])
    for seq, row in zip(a, la, strict=True):
        assert rel_err(row, reference_logits(tiny.model, full_tokens(seq)[:-1])[-1]) < 1e-4


def test_the_engine_replies_the_same_with_the_kernel(interpreted, tiny) -> None:
    """Greedy replies, forecasts and states of sessions whose channels fork, roll back and promote."""
    runs = []
    for paged in (True, False):
        engine = Engine(tiny, EngineConfig(paged_attention=paged))
        assert engine.runner.paged == paged
        sessions = [engine.open_session(SessionConfig(sampling=SamplingParams(max_new_tokens=6)))
                    for _ in range(2)]
        for i, s in enumerate(sessions):
            s.push_slice(f"question number {i} about")
        events = run_until_idle(engine)
        sessions[0].push_slice("the weather tomorrow")  # a new slice: the forecast rolls back and re-forks
        events += run_until_idle(engine)
        runs.append([(type(e).__name__, getattr(e, "delta", None), getattr(e, "state", None)) for e in events])
    assert runs[0] == runs[1]
    assert any(name == "StateDecided" for name, *_ in runs[0])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize(("heads", "kv_heads"), [(28, 4), (12, 2), (9, 3)])
@pytest.mark.parametrize("rows", [3, 600])
def test_compiled_kernel_equals_the_reference_in_bf16(heads: int, kv_heads: int, rows: int) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    slots, width, head_dim = 60_000, 1024, 128 if heads != 9 else 64
    kw = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    k, v = torch.randn(slots, kv_heads, head_dim, **kw), torch.randn(slots, kv_heads, head_dim, **kw)
    q = torch.randn(rows, heads, head_dim, **kw)
    table = torch.randint(1, slots, (rows, width), device="cuda", generator=g)
    key_len = torch.randint(1, width + 1, (rows,), device="cuda", generator=g)
    out = pd.paged_decode(q, k, v, table, key_len, head_dim**-0.5)
    ref = _gathered(q.float(), k.float(), v.float(), table, key_len, head_dim**-0.5)
    assert rel_err(out.float(), ref) < 2e-2


def test_a_slot_table_smaller_than_the_sequences_reuses_rows_and_stays_exact(interpreted, tiny) -> None:
    """Three rows for four sequences over three ticks: rows are taken over and written afresh, and every
    tick's logits equal the gathered path's."""
    from duo.engine.slot_table import SlotTable

    paged, gathered = _runner(tiny, True), _runner(tiny, False)
    paged.slots = SlotTable(4, paged.slots.width, paged.device)  # three rows beside the padding's
    a, b = _tree(paged), _tree(gathered)
    for round_ in range(3):
        pick = [0, 2, 3] if round_ % 2 else [1, 2, 3]  # alternating sets: rows change hands
        la, lb = paged.run(whole([a[i] for i in pick])), gathered.run(whole([b[i] for i in pick]))
        assert rel_err(la, lb) < 1e-5, round_
        for i in pick:
            a[i].append([7 + round_])
            b[i].append([7 + round_])
    assert paged.slots.rewritten > 0


@cuda
@pytest.mark.gpu
def test_compiled_kernel_reads_an_int32_slot_table_through_row_indices() -> None:
    """As the engine calls it: int32 table rows shared by a prefill row's tokens, each up to its own limit."""
    g = torch.Generator(device="cuda").manual_seed(1)
    slots, width, heads, kv_heads, head_dim = 60_000, 2048, 12, 2, 128
    kw = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    k, v = torch.randn(slots, kv_heads, head_dim, **kw), torch.randn(slots, kv_heads, head_dim, **kw)
    table = torch.randint(1, slots, (6, width), device="cuda", generator=g, dtype=torch.int32)
    rows_of = torch.tensor([0, 1, 2, *[5] * 40], device="cuda")
    key_len = torch.tensor([1, 900, 2048, *range(1500, 1540)], device="cuda")
    q = torch.randn(len(rows_of), heads, head_dim, **kw)
    out = pd.paged_decode(q, k, v, table, key_len, head_dim**-0.5, rows_of)
    ref = _gathered(q.float(), k.float(), v.float(), table[rows_of].long(), key_len, head_dim**-0.5)
    assert rel_err(out.float(), ref) < 2e-2

"""The device slot table: a row is written once from the host's slots, then kept; a changed view, a reused
row or a failed tick writes it afresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duo.engine.kv_cache import KVCache
from duo.engine.plan import Chunk
from duo.engine.sequence import Sequence
from duo.engine.slot_table import SlotTable


def _kv() -> KVCache:
    return KVCache(num_layers=1, num_kv_heads=1, head_dim=2, block_size=16, num_blocks=64, max_blocks=64,
                   dtype=torch.float32, device=torch.device("cpu"))


def _run(table: SlotTable, chunks: list[Chunk]) -> tuple[np.ndarray, int]:
    """Assign, write and then do what the forward does: each chunk's own slots into its row."""
    rows, at, slots = table.assign(chunks)
    table.write(torch.from_numpy(at), torch.from_numpy(slots))
    for row, c in zip(rows.tolist(), chunks, strict=True):
        start = c.seq.num_cached
        table.table[row, c.seq.base + start : c.keys] = torch.from_numpy(c.seq.slots(start, start + c.n))
        c.seq.num_cached += c.n
    return rows, len(at)


def _holds(table: SlotTable, row: int, seq: Sequence) -> bool:
    keys = seq.base + seq.num_cached
    return bool((table.table[row, :keys].numpy() == np.concatenate(seq.key_slots(seq.num_cached))).all())


def test_rows_are_written_once_then_kept_and_rewritten_when_the_view_changes() -> None:
    kv, table = _kv(), SlotTable(4, 256, torch.device("cpu"))
    root = Sequence(kv, list(range(40)))
    rows, written = _run(table, [Chunk(root, 40)])
    assert written == 0 and _holds(table, int(rows[0]), root)  # a new root: all its keys are its own
    child = Sequence(kv, [7, 8, 9], parent=root, parent_len=30)
    (row,), written = _run(table, [Chunk(child, 3)])
    assert written == 30 and _holds(table, row, child)  # the ancestry, from the host's cache
    child.append([5])
    assert _run(table, [Chunk(child, 1)]) == ([row], 0) and _holds(table, row, child)  # a decode step: kept
    root.truncate(20)  # below what the child saw: its view changes
    child.reattach(20)
    (again,), written = _run(table, [Chunk(child, 4)])
    assert again == row and written == 20 and _holds(table, row, child)


def test_a_full_table_reuses_the_row_that_ran_longest_ago_and_a_failed_tick_forgets() -> None:
    kv, table = _kv(), SlotTable(3, 256, torch.device("cpu"))  # rows 1 and 2 (row 0 is the padding's)
    seqs = [Sequence(kv, list(range(10 * (i + 1)))) for i in range(3)]
    (a,), _ = _run(table, [Chunk(seqs[0], 10)])
    (b,), _ = _run(table, [Chunk(seqs[1], 20)])
    (c,), _ = _run(table, [Chunk(seqs[2], 30)])
    assert c == a != b  # the first ran longest ago
    seqs[0].append([1])
    (a2,), written = _run(table, [Chunk(seqs[0], 1)])
    assert a2 == b and written == 10 and _holds(table, a2, seqs[0])  # evicted: written afresh
    with pytest.raises(RuntimeError, match="every slot-table row"):
        table.assign([Chunk(seqs[1], 1), Chunk(seqs[2], 1), Chunk(seqs[0], 1)])
    table.forget([Chunk(seqs[0], 1)])  # its tick failed: what its row holds is not known
    seqs[0].append([2])
    _, at, _ = table.assign([Chunk(seqs[0], 1)])
    assert len(at) == seqs[0].num_cached == 11  # written afresh
    with pytest.raises(ValueError, match="passes the slot table"):
        table.assign([Chunk(Sequence(kv, list(range(300))), 300)])

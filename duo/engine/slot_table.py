"""The slot tables of in-place attention, kept on the device across ticks.

A row lists the pool slot of every key a sequence sees, in position order (its visible ancestry, then its
own tokens). Rebuilt on the host every tick, the rows of a thousand sessions are megabytes to fill and copy
while the GPU waits, and their width (the longest row's keys) is a dimension of every captured graph. Kept
here instead, a sequence's row is written once, when it first runs or after its view changed
(`Sequence.version`: a rollback, a re-attachment), from the host's cached slots; after that the forward
writes each new token's slot itself, at its position, as it writes the token's KV (`TickBatch.in_place`). A tick
then sends a row index and a position per token: its payload no longer grows with the context.

Row 0 is the padding's: its first entry is the scratch slot, the one key a padded query sees. Rows of
sequences that no longer run are reused, least recently run first; a reused row is written afresh.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from .cuda_graphs import PREFILL_ROWS
from .kv_cache import KVCache
from .plan import Chunk


class SlotTable:
    """`rows` rows of `width` keys (the context window) on `device`."""

    def __init__(self, rows: int, width: int, device: torch.device) -> None:
        self.width = width
        self.table = torch.full((rows, width), KVCache.SCRATCH, dtype=torch.int32, device=device)
        self._free = list(range(rows - 1, 0, -1))
        self._rows: OrderedDict[int, tuple[int, int]] = OrderedDict()  # sequence id -> (row, version written)
        self.rewritten = 0  # entries written from the host so far

    @classmethod
    def sized(cls, decode_rows: int, width: int, device: torch.device) -> SlotTable:
        """Rows for a tick of `decode_rows` decode rows and the most prefill rows a tick admits, and half as
        many again for the sequences that ran lately and may run again (each reuse is a rewrite)."""
        return cls(decode_rows * 3 // 2 + PREFILL_ROWS + 16, width, device)

    def assign(self, chunks: list[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each chunk's row, and the entries to write first: (rows, flat indices, slots).

        A row that is current needs nothing; a new or stale one gets the keys before the chunk's tokens (the
        chunk's own are written by the forward). Raises ValueError past the table's width.
        """
        rows = np.empty(len(chunks), dtype=np.int64)
        at: list[np.ndarray] = []
        slots: list[np.ndarray] = []
        used: set[int] = set()
        for i, chunk in enumerate(chunks):
            seq = chunk.seq
            if chunk.keys > self.width:
                raise ValueError(f"a sequence of {chunk.keys} keys passes the slot table's {self.width}")
            known = self._rows.get(seq.id)
            if known is not None:
                self._rows.move_to_end(seq.id)
            if known is not None and known[1] == seq.version:
                row = known[0]
            else:
                row = known[0] if known is not None else self._take(used)
                self._rows[seq.id] = (row, seq.version)
                before = seq.base + chunk.start
                if before:
                    at.append(row * self.width + np.arange(before))
                    slots.append(seq.visible_slots(chunk.start))
            used.add(row)
            rows[i] = row
        if not at:
            return rows, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        flat, values = np.concatenate(at), np.concatenate(slots)
        self.rewritten += flat.size
        return rows, flat, values

    def forget(self, chunks: list[Chunk]) -> None:
        """A tick failed: its chunks' rows may be half written, so each is written afresh when it next runs."""
        for chunk in chunks:
            known = self._rows.pop(chunk.seq.id, None)
            if known is not None:
                self._free.append(known[0])

    def write(self, flat: torch.Tensor, slots: torch.Tensor) -> None:
        """Write entries (device tensors from `assign`) before the forward that reads them."""
        if flat.numel():
            self.table.view(-1).index_copy_(0, flat, slots.to(self.table.dtype))

    def _take(self, used: set[int]) -> int:
        """A free row, or the row of the sequence that ran least recently and is not in this tick."""
        if self._free:
            return self._free.pop()
        for sid, (row, _) in self._rows.items():
            if row not in used:
                del self._rows[sid]
                return row
        raise RuntimeError("every slot-table row is in this tick")

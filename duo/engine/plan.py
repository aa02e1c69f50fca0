"""The host side of a tick: which tokens of which sequences run, laid out as a few flat integer arrays.

A tick advances each sequence by a `Chunk`: the next `n` of its pending tokens (all of them, or a part of
a long prefill spread over several ticks). `plan_tick` lays chunks out in a `TickShape` (see
`attention.py` for the layout) and allocates the KV slots they write; the runner turns the plan into
device tensors, and a CUDA graph replays a plan padded to a bucketed shape. Both import this module,
never each other's.

What a forward needs travels as a `Step` (a few ints: eager or graph, the shape, the pool size) and one flat
int64 payload of the plan's arrays (`pack` / `unpack`): one copy to the device per tick, and under tensor
parallelism the very message rank 0 broadcasts to the other ranks (`parallel.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .kv_cache import KVCache
from .sequence import Sequence


@dataclass(frozen=True)
class Chunk:
    """The next `n` pending tokens of `seq`, run in one tick."""

    seq: Sequence
    n: int

    @property
    def start(self) -> int:
        return self.seq.num_cached

    @property
    def keys(self) -> int:
        """Keys its last token sees: the visible ancestry, then own tokens up to the chunk's end."""
        return self.seq.base + self.start + self.n

    @property
    def new_blocks(self) -> int:
        """KV blocks the chunk adds to its sequence."""
        return max(0, -(-(self.start + self.n) // self.seq.kv.block_size) - len(self.seq.blocks))


def whole(seqs: list[Sequence]) -> list[Chunk]:
    """Every pending token of each sequence."""
    return [Chunk(seq, len(seq.pending)) for seq in seqs]


@dataclass(frozen=True)
class TickShape:
    decode: int  # rows of one token
    prefill: int  # rows of several tokens
    width: int  # tokens per prefill row (padded)
    keys: int  # keys per row (padded)

    @property
    def tokens(self) -> int:
        return self.decode + self.prefill * self.width


@dataclass
class TickPlan:
    """Host arrays of one tick, padded to `shape`; padding reads and writes the scratch slot only."""

    shape: TickShape
    ids: np.ndarray  # [tokens]
    positions: np.ndarray  # [tokens]
    write_slots: np.ndarray  # [tokens]
    table: np.ndarray  # [decode + prefill, keys]
    key_len: np.ndarray  # [decode]
    ctx: np.ndarray  # [prefill]
    q_len: np.ndarray  # [prefill]
    row_last: np.ndarray  # [decode + prefill] flat index of each row's last token
    rows: np.ndarray  # [len(chunks)] the row of each chunk, in the order given

    # the arrays a graph copies in, in a fixed order
    INPUTS = ("ids", "positions", "write_slots", "table", "key_len", "ctx", "q_len", "row_last")


def exact_shape(chunks: list[Chunk]) -> TickShape:
    return TickShape(
        decode=sum(c.n == 1 for c in chunks),
        prefill=sum(c.n > 1 for c in chunks),
        width=max((c.n for c in chunks if c.n > 1), default=0),
        keys=max((c.keys for c in chunks), default=0),
    )


def plan_tick(chunks: list[Chunk], shape: TickShape) -> TickPlan:
    """Lay `chunks` out in `shape` (at least their exact shape), allocating the KV slots they write."""
    d, p, w = shape.decode, shape.prefill, shape.width
    scratch = KVCache.SCRATCH
    ids = np.zeros(shape.tokens, dtype=np.int64)
    positions = np.zeros(shape.tokens, dtype=np.int64)
    write = np.full(shape.tokens, scratch, dtype=np.int64)
    table = np.full((d + p, shape.keys), scratch, dtype=np.int64)
    key_len = np.ones(d, dtype=np.int64)
    ctx = np.zeros(p, dtype=np.int64)
    q_len = np.zeros(p, dtype=np.int64)
    row_last = np.arange(d + p, dtype=np.int64)
    rows = np.empty(len(chunks), dtype=np.int64)
    nd = npre = 0
    for i, chunk in enumerate(chunks):
        seq, q = chunk.seq, chunk.n
        slots = np.concatenate(seq.key_slots(chunk.start + q))
        n = len(slots)
        if q == 1:
            r = t = nd
            nd += 1
            key_len[r] = n
        else:
            r, t = d + npre, d + npre * w
            ctx[npre], q_len[npre] = n - q, q
            npre += 1
        table[r, :n] = slots
        ids[t : t + q] = seq.tokens[chunk.start : chunk.start + q]
        positions[t : t + q] = np.arange(n - q, n)
        write[t : t + q] = slots[n - q :]
        row_last[r] = t + q - 1
        rows[i] = r
    return TickPlan(shape, ids, positions, write, table, key_len, ctx, q_len, row_last, rows)


@dataclass(frozen=True)
class Step:
    """How one forward runs on every rank: eagerly or as the graph of `shape`, over a pool of `num_blocks`.

    An eager step also carries `keep`, the number of flat token indices whose logits it returns; a graph step
    returns each row's last token.
    """

    graph: bool
    shape: TickShape
    num_blocks: int
    keep: int = 0

    HEADER = 7  # ints in `header()`

    def header(self) -> list[int]:
        s = self.shape
        return [int(self.graph), s.decode, s.prefill, s.width, s.keys, self.num_blocks, self.keep]

    @classmethod
    def from_header(cls, h: list[int]) -> Step:
        return cls(bool(h[0]), TickShape(*h[1:5]), h[5], h[6])

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """The payload's arrays in order: `TickPlan.INPUTS`, then the kept indices of an eager step."""
        d, p, t = self.shape.decode, self.shape.prefill, self.shape.tokens
        shapes = {"ids": (t,), "positions": (t,), "write_slots": (t,), "table": (d + p, self.shape.keys),
                  "key_len": (d,), "ctx": (p,), "q_len": (p,), "row_last": (d + p,)}
        parts = [(name, shapes[name]) for name in TickPlan.INPUTS]
        return parts if self.graph else [*parts, ("keep", (self.keep,))]

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.layout())


def pack(plan: TickPlan, keep: np.ndarray | None = None) -> np.ndarray:
    """The plan's arrays (and an eager step's kept indices) as one flat int64 array, in `Step.layout` order."""
    parts = [getattr(plan, name).ravel() for name in TickPlan.INPUTS]
    return np.concatenate(parts if keep is None else [*parts, keep]).astype(np.int64, copy=False)


def unpack(flat: Any, step: Step) -> dict[str, Any]:
    """Views of a flat payload (numpy or torch) as the named arrays of `step`."""
    out, at = {}, 0
    for name, shape in step.layout():
        n = int(np.prod(shape))
        out[name] = flat[at : at + n].reshape(shape)
        at += n
    return out

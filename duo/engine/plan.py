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
    """The next `n` pending tokens of `seq`, run in one tick.

    `fed`: the one token is not on the host yet: it is row `fed` of the previous tick's chosen tokens, still
    on the device, which the runner writes into this tick's input there (overlapped ticks, `overlap.py`).
    """

    seq: Sequence
    n: int
    fed: int | None = None

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
    return [Chunk(seq, seq.num_pending) for seq in seqs]


@dataclass(frozen=True)
class TickShape:
    """A tick's padded layout.

    Gathered (`keys` > 0): decode rows of one token, then prefill rows each padded to `width`, as masked SDPA
    needs. In place (`keys` 0, rows read through the device's slot table, `slot_table.py`) every token is a
    query row of its own, as the kernel sees it, so the tick is packed: its chunks lie back to back, `decode`
    counts its tokens (there are no prefill rows) and the forward returns every token's logits, of which a
    chunk takes its last token's. Padding is then only the tokens up to the next bucket.
    """

    decode: int  # rows of one token (packed: every token)
    prefill: int  # rows of several tokens
    width: int  # tokens per prefill row (padded)
    keys: int  # keys per row (padded); 0: in place, packed

    @property
    def tokens(self) -> int:
        return self.decode + self.prefill * self.width

    @property
    def packed(self) -> bool:
        return self.keys == 0


@dataclass
class TickPlan:
    """Host arrays of one tick, padded to `shape`; padding reads and writes the scratch slot only.

    The arrays are views, in `Step.layout` order, of one flat int64 array (`flat`): that is the payload a
    graph step sends as it is, with no copy (`pack`).
    """

    shape: TickShape
    ids: np.ndarray  # [tokens]
    positions: np.ndarray  # [tokens]
    write_slots: np.ndarray  # [tokens]
    token_rows: np.ndarray  # [tokens] the device slot-table row of each token (0: padding)
    table: np.ndarray  # [decode + prefill, keys]
    key_len: np.ndarray  # [decode]
    ctx: np.ndarray  # [prefill]
    q_len: np.ndarray  # [prefill]
    row_last: np.ndarray  # [decode + prefill] flat index of each row's last token (packed: its own)
    rows: np.ndarray  # [len(chunks)] the row of each chunk, in the order given
    flat: np.ndarray | None = None  # the arrays above, back to back
    fed_at: np.ndarray | None = None  # flat token indices of the fed chunks' tokens (`Chunk.fed`) ...
    fed_from: np.ndarray | None = None  # ... and the rows of the previous tick's tokens they take

    # the arrays a graph copies in, in a fixed order
    INPUTS = ("ids", "positions", "write_slots", "token_rows", "table", "key_len", "ctx", "q_len", "row_last")


def exact_shape(chunks: list[Chunk], packed: bool = False) -> TickShape:
    """The smallest shape that holds `chunks` (one pass: it runs every tick over every row); `packed`: laid
    out in place (`TickShape`), one row per token."""
    if packed:
        return TickShape(decode=sum(c.n for c in chunks), prefill=0, width=0, keys=0)
    decode = prefill = width = keys = 0
    for c in chunks:
        n = c.n
        if n == 1:
            decode += 1
        elif n > 1:
            prefill += 1
            width = max(width, n)
        keys = max(keys, c.seq.base + c.seq.num_cached + n)
    return TickShape(decode=decode, prefill=prefill, width=width, keys=keys)


def plan_tick(chunks: list[Chunk], shape: TickShape, out: np.ndarray | None = None,
              rows_of: np.ndarray | None = None) -> TickPlan:
    """Lay `chunks` out in `shape` (at least their exact shape), allocating the KV slots they write.

    `out`, if given, is a flat int64 buffer of at least `Step(True, shape, 0).size` that the plan's arrays
    are written into (the runner's pinned staging memory on CUDA). One pass over the chunks gathers what
    only they know (their slots, cached per sequence, and tokens); the rest is array arithmetic.

    With `shape.keys` 0 the rows' keys are read through the device's slot table (`slot_table.py`): the plan
    has no table, only each token's row there (`rows_of`, one per chunk) and the slot it writes.
    """
    d, p, w = shape.decode, shape.prefill, shape.width
    if shape.packed and p:
        raise ValueError(f"a packed tick has no prefill rows: {shape}")
    flat = np.empty(Step(True, shape, 0).size, dtype=np.int64) if out is None else out[: Step(True, shape, 0).size]
    a = unpack(flat, Step(True, shape, 0))
    a["ids"][:] = 0
    a["positions"][:] = 0
    a["write_slots"][:] = KVCache.SCRATCH
    a["token_rows"][:] = 0
    a["table"][:] = KVCache.SCRATCH
    a["key_len"][:] = 1
    a["ctx"][:] = 0
    a["q_len"][:] = 0
    a["row_last"][:] = np.arange(d + p)
    m, in_place = len(chunks), shape.keys == 0
    slots, tokens = [], []
    for chunk in chunks:  # in order: blocks are allocated as the chunks come
        seq, start = chunk.seq, chunk.seq.num_cached
        slots.append(seq.slots(start, start + chunk.n) if in_place else seq.visible_slots(start + chunk.n))
        tokens += seq.tokens[start : start + chunk.n] if chunk.fed is None else [0]  # the device writes it
    n = np.fromiter((c.n for c in chunks), dtype=np.int64, count=m)
    keys = np.fromiter((c.keys for c in chunks), dtype=np.int64, count=m)
    decode = n == 1
    if in_place:  # packed: each chunk starts where the one before it ends, and its row is its last token
        first = np.cumsum(n) - n
        rows = first + n - 1
    else:
        rank = np.where(decode, np.cumsum(decode), np.cumsum(~decode)) - 1  # among decode rows, or prefill rows
        rows = np.where(decode, rank, d + rank)
        first = np.where(decode, rank, d + rank * w)  # flat index of each chunk's first token
    total = int(n.sum())
    at = np.arange(total) - np.repeat(np.cumsum(n) - n, n)  # index of each token within its chunk
    flat_index = np.repeat(first, n) + at
    pos = np.repeat(keys - n, n) + at  # a token's position is its key's index in the row
    a["ids"][flat_index] = tokens
    a["positions"][flat_index] = pos
    if in_place:
        if m:
            a["write_slots"][flat_index] = np.concatenate(slots)
        if rows_of is not None:
            a["token_rows"][flat_index] = np.repeat(rows_of, n)
    else:  # the rows' slot tables, and what masked SDPA needs
        table = a["table"]
        for r, row in zip(rows.tolist(), slots, strict=True):
            table[r, : len(row)] = row
        a["write_slots"][flat_index] = table[np.repeat(rows, n), pos]
        a["key_len"][: int(decode.sum())] = keys[decode]
        a["ctx"][: m - int(decode.sum())] = (keys - n)[~decode]
        a["q_len"][: m - int(decode.sum())] = n[~decode]
        a["row_last"][rows] = first + n - 1
    fed = np.fromiter((-1 if c.fed is None else c.fed for c in chunks), dtype=np.int64, count=m)
    feeds = fed >= 0
    return TickPlan(shape, *(a[name] for name in TickPlan.INPUTS), rows=rows, flat=flat,
                    fed_at=first[feeds], fed_from=fed[feeds])


@dataclass(frozen=True)
class Step:
    """How one forward runs on every rank: eagerly or as the graph of `shape`, over a pool of `num_blocks`.

    An eager step also carries `keep`, the number of flat token indices whose logits it returns; a graph step
    returns each row's last token. `rewrites`: slot-table entries written before the forward (`slot_table.py`),
    sent after the plan as their flat indices, then their slots.
    """

    graph: bool
    shape: TickShape
    num_blocks: int
    keep: int = 0
    rewrites: int = 0

    HEADER = 8  # ints in `header()`

    def header(self) -> list[int]:
        s = self.shape
        return [int(self.graph), s.decode, s.prefill, s.width, s.keys, self.num_blocks, self.keep, self.rewrites]

    @classmethod
    def from_header(cls, h: list[int]) -> Step:
        return cls(bool(h[0]), TickShape(*h[1:5]), h[5], h[6], h[7])

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """The payload's arrays in order: `TickPlan.INPUTS`, the kept indices of an eager step, the rewrites."""
        d, p, t = self.shape.decode, self.shape.prefill, self.shape.tokens
        shapes = {"ids": (t,), "positions": (t,), "write_slots": (t,), "token_rows": (t,),
                  "table": (d + p, self.shape.keys), "key_len": (d,), "ctx": (p,), "q_len": (p,), "row_last": (d + p,)}
        parts = [(name, shapes[name]) for name in TickPlan.INPUTS]
        if not self.graph:
            parts.append(("keep", (self.keep,)))
        return [*parts, ("rewrite_at", (self.rewrites,)), ("rewrite_slot", (self.rewrites,))]

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.layout())


def pack(plan: TickPlan, keep: np.ndarray | None = None,
         rewrites: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The plan's arrays, an eager step's kept indices and the rewrites as one flat int64 array, in
    `Step.layout` order (the plan's own buffer when there is nothing to add)."""
    extra = [] if keep is None else [keep]
    if rewrites is not None and len(rewrites[0]):
        extra += list(rewrites)
    if plan.flat is not None and not extra:
        return plan.flat
    parts = [plan.flat] if plan.flat is not None else [getattr(plan, name).ravel() for name in TickPlan.INPUTS]
    return np.concatenate([*parts, *extra]).astype(np.int64, copy=False)


def unpack(flat: Any, step: Step) -> dict[str, Any]:
    """Views of a flat payload (numpy or torch) as the named arrays of `step`."""
    out, at = {}, 0
    for name, shape in step.layout():
        n = int(np.prod(shape))
        out[name] = flat[at : at + n].reshape(shape)
        at += n
    return out

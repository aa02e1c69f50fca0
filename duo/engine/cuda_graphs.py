"""Captured CUDA graphs of the tick forward, one per bucketed tick shape.

A decode tick of a 7B model is hundreds of small kernels; launched one by one from Python they cost more
than the math. A graph replays them in one launch. Shapes are bucketed: on the reference path by decode
rows, prefill rows and width, and keys; in place, where rows read the device's slot table and a tick is packed
(`plan.TickShape`), by tokens alone. The buckets are made to cover every tick the engine can plan: decode rows
up to what its `max_sessions` produce (a reply and an input being judged each), keys up to its context window,
prefill rows and width up to the largest bucket (admission cuts longer prefills into chunks that fit,
`scheduler.py`). `Engine.warmup`
captures all of them before the server says it is ready, so no live tick pays for a capture.

Graphs never run concurrently, so they share everything that does not depend on the shape: one memory pool,
one flat input buffer (the step's payload, `plan.pack`, of the largest shape; a graph reads its inputs as
views of its start, refilled each tick with one copy or, on the other ranks of a tensor-parallel group, by
receiving rank 0's broadcast into it) and one logits buffer the graph writes its rows into. A graph therefore
costs little memory of its own, and hundreds fit. Reallocating the KV pool (which a fixed pool on CUDA never
does) would drop them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import TickBatch
from .kv_cache import KVCache
from .plan import Step, TickShape, pack, plan_tick, unpack

# The model over a flat tick: (ids, positions, batch, flat indices to keep) -> logits
Forward = Callable[[torch.Tensor, torch.Tensor, TickBatch, torch.Tensor], torch.Tensor]
# A step's device inputs (views of its payload) -> what attention reads (the runner's choice of kernels)
Build = Callable[[dict[str, torch.Tensor], TickShape], TickBatch]

log = logging.getLogger(__name__)

# Every bucket multiplies the graphs captured before ready (each costs two forwards), so buckets are as
# coarse as the padding allows: a few decode rows more cost nothing while the weights' read bounds the tick
# (below ~200 rows at 7B); above, the multiplies are bound by arithmetic and every padded row costs as much as
# a real one, so the steps are 32 rows up to 512 and 64 up to 1,024 (N replies and the few forecasts beside
# them must not pad a fifth of a tick). A slice's prefill rows are rarely wider than 32 tokens.
DECODE = (0, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
          480, 512, 576, 640, 704, 768, 832, 896, 960, 1024, 1280, 1536, 2048)  # beyond 2,048: steps of 512
PREFILL = ((0, 0), (1, 32), (2, 32), (4, 32), (8, 32), (16, 32), (4, 64), (16, 64))
# In place a tick is packed (`TickShape`): its one dimension is tokens, decode and prefill alike, so its buckets
# are token counts, and finer: a DUO tick is its replies plus a few forecast rows and slices, and every padded
# token costs as much as a real one once the multiplies are bound by arithmetic.
TOKENS = (4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, *range(144, 513, 16), *range(544, 2049, 32),
          *range(2176, 4097, 128))  # beyond 4,096: steps of 512
KEYS = (256, 512, 1024, 1536, 2048, 3072, 4096)  # beyond 4,096 doubling (`key_buckets`)
# Slot-table entries of the largest graph on the reference path (32 MiB of int64): a tick past it spends
# milliseconds copying its table alone, graph or not, so it runs eagerly rather than add graphs no real-time
# load can use. (In place, the table stays on the device: `slot_table.py`.)
TABLE_CELLS = 1 << 22
PREFILL_ROWS = max(p for p, _ in PREFILL)  # a tick's prefill rows and width never exceed these with graphs on
PREFILL_WIDTH = max(w for _, w in PREFILL)


def decode_buckets(max_rows: int, base: tuple[int, ...] = DECODE) -> tuple[int, ...]:
    """Decode-row buckets (or, `base` `TOKENS`, packed token buckets) up to the first that holds `max_rows`."""
    out = list(base)
    while out[-1] < max_rows:
        out.append(out[-1] + 512)
    return tuple(out[: next(i for i, d in enumerate(out) if d >= max_rows) + 1])


def key_buckets(max_keys: int) -> tuple[int, ...]:
    """Key buckets up to the first that holds `max_keys` (a row's context: the window)."""
    out = list(KEYS)
    while out[-1] < max_keys:
        out.append(out[-1] * 2)
    return tuple(out[: next(i for i, k in enumerate(out) if k >= max_keys) + 1])


def bucket(shape: TickShape, decode: tuple[int, ...] = DECODE, keys: tuple[int, ...] = KEYS) -> TickShape | None:
    """The smallest captured shape that holds `shape`, or None (run eagerly). Packed, `decode` holds tokens."""
    if shape.packed:
        t = next((b for b in decode if b >= shape.tokens), None)
        return None if t is None or t == 0 else TickShape(t, 0, 0, 0)
    d = next((b for b in decode if b >= shape.decode), None)
    prefill = next(((p, w) for p, w in PREFILL if p >= shape.prefill and w >= shape.width), None)
    k = next((b for b in keys if b >= shape.keys), None)
    if d is None or prefill is None or k is None or d + prefill[0] == 0:
        return None
    return TickShape(d, prefill[0], prefill[1], k)


def all_shapes(decode: tuple[int, ...], keys: tuple[int, ...], max_cells: int | None = None) -> list[TickShape]:
    """Every bucket a tick can fall into, largest first (the shared pool reaches its peak with the first).

    On the reference path `max_cells` bounds the keys a shape gathers (rows x keys): rows that all see that
    many keys would need more KV than the pool holds, and their gathered copy more memory than is left; the
    slot table itself is bounded by `TABLE_CELLS`. The smallest key bucket is kept for every row count, so
    any number of short conversations runs as a graph. In place (`keys` is `(0,)`) nothing bounds them.
    """
    def fits(d: int, p: int, k: int) -> bool:
        if k == keys[0] or max_cells is None:
            return True
        return (d + p) * k <= min(max_cells, TABLE_CELLS)

    if keys == (0,):  # packed: token counts alone
        return sorted((TickShape(t, 0, 0, 0) for t in decode if t), key=lambda s: s.tokens, reverse=True)
    shapes = [TickShape(d, p, w, k) for d in decode for p, w in PREFILL for k in keys if d + p and fits(d, p, k)]
    return sorted(shapes, key=lambda s: (s.tokens * s.keys, s.tokens), reverse=True)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    buffer: torch.Tensor  # the flat payload its inputs are views of (the start of the shared input buffer)
    logits: torch.Tensor  # its rows of the shared logits buffer


class CudaGraphs:
    """The graphs of one runner, for ticks of up to `max_rows` decode rows and `max_keys` keys a row."""

    def __init__(self, kv: KVCache, forward: Forward, build: Build, device: torch.device,
                 max_rows: int = DECODE[-1], max_keys: int = KEYS[-1], paged: bool = False) -> None:
        """`paged`: rows read the pool in place through the device's slot table: no key dimension at all."""
        self.kv, self.forward, self.build, self.device, self.paged = kv, forward, build, device, paged
        if paged:  # packed: the decode rows and the most prefill tokens admission lets into a graph
            self.decode, self.keys = decode_buckets(max_rows + PREFILL_ROWS * PREFILL_WIDTH, TOKENS), (0,)
        else:
            self.decode, self.keys = decode_buckets(max_rows), key_buckets(max_keys)
        self.max_cells = 2 * kv.num_blocks * kv.block_size  # each of a session's two rows sees its context once
        self.graphs: dict[TickShape, _Graph] = {}
        self.captures = 0  # graphs captured so far (after warm-up, each one a tick that stalled every session)
        self.pool = torch.cuda.graph_pool_handle()
        self._stream = torch.cuda.Stream(device)
        self.version = kv.version
        shapes = self.shapes()
        self._covered = set(shapes)
        self._inputs = torch.zeros(max(Step(True, s, 0).size for s in shapes), dtype=torch.int64, device=device)
        self._rows = max(s.decode + s.prefill for s in shapes)
        self._logits: torch.Tensor | None = None  # [rows, vocab], allocated by the first capture

    def shapes(self) -> list[TickShape]:
        """Every shape a graph is kept for, largest first."""
        return all_shapes(self.decode, self.keys, self.max_cells)

    def shape_for(self, shape: TickShape) -> TickShape | None:
        """The graph shape that holds `shape`, or None: it runs eagerly."""
        if self.paged:
            shape = TickShape(shape.tokens, 0, 0, 0)
        padded = bucket(shape, self.decode, self.keys)
        return padded if padded in self._covered else None

    def get(self, shape: TickShape) -> _Graph:
        """The graph of `shape`, captured now if it is new. Fill its `buffer`, then `replay`."""
        if self.version != self.kv.version:  # the pool moved (a growing pool): stale addresses
            self.graphs.clear()
            self.version = self.kv.version
        return self.graphs.get(shape) or self.capture(shape)

    @staticmethod
    def replay(g: _Graph) -> torch.Tensor:
        """Logits `[rows, vocab]` at each row's last token (shared storage: read before the next replay)."""
        g.graph.replay()
        return g.logits

    @torch.inference_mode()
    def capture(self, shape: TickShape) -> _Graph:
        empty = pack(plan_tick([], shape))  # all padding: warm-up runs touch the scratch slot only
        buffer = self._inputs[: empty.size]
        buffer.copy_(torch.from_numpy(empty))
        inputs = unpack(buffer, Step(True, shape, self.kv.num_blocks))
        rows = shape.decode + shape.prefill

        def forward() -> torch.Tensor:
            return self.forward(inputs["ids"], inputs["positions"], self.build(inputs, shape), inputs["row_last"])

        stream = self._stream  # one warm-up pass on a side stream (lazy kernel set-up), as capture requires
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            logits = forward()
        torch.cuda.current_stream().wait_stream(stream)
        if self._logits is None:  # outside any graph: every graph writes its rows here
            self._logits = torch.empty((self._rows, logits.shape[-1]), dtype=logits.dtype, device=self.device)
        out = self._logits[:rows]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out.copy_(forward())
        g = self.graphs[shape] = _Graph(graph, buffer, out)
        self.captures += 1
        log.info("event=cuda_graph_captured shape=%s graphs=%d", shape, len(self.graphs))
        return g

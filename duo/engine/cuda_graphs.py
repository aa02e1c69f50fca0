"""Captured CUDA graphs of the tick forward, one per bucketed tick shape.

A decode tick of a 7B model is hundreds of small kernels; launched one by one from Python they cost more
than the math. A graph replays them in one launch. Shapes are bucketed (rows, prefill rows and width, keys)
so a few dozen graphs cover a serving day; a tick whose shape has no bucket runs eagerly, exactly the same
computation. A graph reads its inputs as views of one static flat buffer (the step's payload, `plan.pack`)
that the runner refills each tick, with one copy or, on the other ranks of a tensor-parallel group, by
receiving rank 0's broadcast into it. Graphs share one memory pool (they never run concurrently).
Reallocating the KV pool (`KVCache._grow`) drops them all.
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

DECODE = (0, 1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
          896, 1024, 1280, 1536, 2048)  # rows: up to 1,024 sessions, each a reply and an input being judged
PREFILL = ((0, 0), (1, 32), (2, 32), (4, 32), (8, 32), (2, 64), (4, 64), (8, 64), (16, 64))
KEYS = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)


def bucket(shape: TickShape) -> TickShape | None:
    """The smallest captured shape that holds `shape`, or None (run eagerly)."""
    decode = next((d for d in DECODE if d >= shape.decode), None)
    prefill = next(((p, w) for p, w in PREFILL if p >= shape.prefill and w >= shape.width), None)
    keys = next((k for k in KEYS if k >= shape.keys), None)
    if decode is None or prefill is None or keys is None or decode + prefill[0] == 0:
        return None
    return TickShape(decode, prefill[0], prefill[1], keys)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    buffer: torch.Tensor  # the flat payload its inputs are views of
    logits: torch.Tensor


class CudaGraphs:
    def __init__(self, kv: KVCache, forward: Forward, build: Build, device: torch.device,
                 max_graphs: int = 96) -> None:
        self.kv, self.forward, self.build, self.device = kv, forward, build, device
        self.max_graphs = max_graphs
        self.graphs: dict[TickShape, _Graph] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.version = kv.version

    def shape_for(self, shape: TickShape) -> TickShape | None:
        padded = bucket(shape)
        if padded is None or (padded not in self.graphs and len(self.graphs) >= self.max_graphs):
            return None
        return padded

    def get(self, shape: TickShape) -> _Graph:
        """The graph of `shape`, captured now if it is new. Fill its `buffer`, then `replay`."""
        if self.version != self.kv.version:  # the pool moved (planning may grow it): stale addresses
            self.graphs.clear()
            self.version = self.kv.version
        return self.graphs.get(shape) or self.capture(shape)

    @staticmethod
    def replay(g: _Graph) -> torch.Tensor:
        """Logits `[rows, vocab]` at each row's last token (static storage: read before the next tick)."""
        g.graph.replay()
        return g.logits

    @torch.inference_mode()
    def capture(self, shape: TickShape) -> _Graph:
        empty = plan_tick([], shape)  # all padding: warm-up runs touch the scratch slot only
        buffer = torch.from_numpy(pack(empty)).to(self.device)
        inputs = unpack(buffer, Step(True, shape, self.kv.num_blocks))

        def forward() -> torch.Tensor:
            return self.forward(inputs["ids"], inputs["positions"], self.build(inputs, shape), inputs["row_last"])

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                forward()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = forward()
        g = self.graphs[shape] = _Graph(graph, buffer, logits)
        log.info("event=cuda_graph_captured shape=%s graphs=%d", shape, len(self.graphs))
        return g

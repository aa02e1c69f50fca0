"""One forward pass over every pending token of a set of sequences.

Each sequence contributes its pending tokens (a slice prefill, a forecast token, the output channel's
next token). Queries attend to their sequence's visible ancestry and causally to its own tokens, never
to a sibling channel: the 4-D mask of paper Figure 1 (right), extended to many sessions at once. Tokens
sit at their own positions (ancestry length + index), so channels that forked at the same point reuse
position ids, as in a tree. The forward count is measured here, not assumed.

The host side of a tick is a `TickPlan`: a few flat integer arrays (see `attention.py` for the layout).
On CUDA a plan padded to a bucketed shape replays a captured graph (`cuda_graphs.py`); otherwise, and
for shapes no graph covers, the same plan at its exact shape runs eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .attention import TickBatch, tick
from .kv_cache import KVCache
from .sequence import Sequence

log = logging.getLogger(__name__)

# The masked kernels; cuDNN's is left out: its plan setup does not survive CUDA graph capture.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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
    rows: np.ndarray  # [len(seqs)] the row of each sequence, in the order given


def exact_shape(seqs: list[Sequence]) -> TickShape:
    pending = [len(s.pending) for s in seqs]
    return TickShape(
        decode=sum(n == 1 for n in pending),
        prefill=sum(n > 1 for n in pending),
        width=max((n for n in pending if n > 1), default=0),
        keys=max(s.total_len for s in seqs),
    )


def plan_tick(seqs: list[Sequence], shape: TickShape) -> TickPlan:
    """Lay `seqs` out in `shape` (at least their exact shape), allocating the KV slots they write."""
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
    rows = np.empty(len(seqs), dtype=np.int64)
    nd = npre = 0
    for i, seq in enumerate(seqs):
        slots = np.concatenate(seq.key_slots())
        n, q = len(slots), len(seq.pending)
        if q == 1:
            r = t = nd
            nd += 1
            key_len[r] = n
        else:
            r, t = d + npre, d + npre * w
            ctx[npre], q_len[npre] = n - q, q
            npre += 1
        table[r, :n] = slots
        ids[t : t + q] = seq.pending
        positions[t : t + q] = np.arange(n - q, n)
        write[t : t + q] = slots[n - q :]
        row_last[r] = t + q - 1
        rows[i] = r
    return TickPlan(shape, ids, positions, write, table, key_len, ctx, q_len, row_last, rows)


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache, *, cuda_graphs: bool = False) -> None:
        self.model = model
        self.kv = kv
        self.device = next(model.parameters()).device
        self.forward_passes = 0
        self.graphs = None
        if cuda_graphs and self.device.type == "cuda":
            from .cuda_graphs import CudaGraphs

            self.graphs = CudaGraphs(self)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, batch: TickBatch,
                keep: torch.Tensor) -> torch.Tensor:
        """The model over a flat tick: logits `[len(keep), vocab]` at flat token indices `keep`."""
        with tick(batch), sdpa_kernel(SDPA_BACKENDS):
            out = self.model(input_ids=ids[None], position_ids=positions[None], use_cache=False,
                             logits_to_keep=keep)
        return out.logits[0]

    def tensors(self, plan: TickPlan) -> tuple[torch.Tensor, torch.Tensor, TickBatch]:
        dev = self.device
        t = {k: torch.from_numpy(getattr(plan, k)).to(dev)
             for k in ("ids", "positions", "write_slots", "table", "key_len", "ctx", "q_len")}
        batch = TickBatch.build(self.kv, t["write_slots"], t["table"], t["key_len"], t["ctx"], t["q_len"],
                                plan.shape.width)
        return t["ids"], t["positions"], batch

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], *, all_logits: bool = False) -> torch.Tensor:
        """Advance `seqs` by their pending tokens in ONE forward.

        Returns fp32 logits at each sequence's last pending token `[len(seqs), vocab]`, or at every pending
        token `[num_pending, vocab]` with `all_logits`.
        """
        shape = exact_shape(seqs)
        graph_shape = None if (self.graphs is None or all_logits) else self.graphs.shape_for(shape)
        logits = None
        if graph_shape is not None:
            plan = plan_tick(seqs, graph_shape)
            try:
                logits = self.graphs.replay(plan)[torch.from_numpy(plan.rows).to(self.device)]
            except RuntimeError:  # a model whose forward cannot be captured still runs, eagerly
                log.exception("event=cuda_graphs_disabled shape=%s", graph_shape)
                self.graphs = None
        if logits is None:
            plan = plan_tick(seqs, shape)
            if all_logits:
                keep = np.concatenate([np.arange(plan.row_last[r] - len(s.pending) + 1, plan.row_last[r] + 1)
                                       for r, s in zip(plan.rows, seqs, strict=True)])
            else:
                keep = plan.row_last[plan.rows]
            ids, positions, batch = self.tensors(plan)
            logits = self.forward(ids, positions, batch, torch.from_numpy(keep).to(self.device))
        self.forward_passes += 1
        for seq in seqs:
            seq.num_cached = len(seq)
        return logits.float()

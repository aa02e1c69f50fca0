"""One forward pass over every pending token of a set of sequences.

Each sequence contributes its pending tokens (a slice prefill, a forecast token, the output channel's
next token). Queries attend to their sequence's visible ancestry and causally to its own tokens, never
to a sibling channel: the 4-D mask of paper Figure 1 (right), extended to many sessions at once. Tokens
sit at their own positions (ancestry length + index), so channels that forked at the same point reuse
position ids, as in a tree. The forward count is measured here, not assumed.

The host side of a tick is a `TickPlan` of `Chunk`s (`plan.py`). On CUDA a plan padded to a bucketed
shape replays a captured graph (`cuda_graphs.py`); otherwise, and for shapes no graph covers, the same
plan at its exact shape runs eagerly.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .attention import TickBatch, tick
from .cuda_graphs import CudaGraphs
from .kv_cache import KVCache
from .plan import Chunk, TickPlan, exact_shape, plan_tick

log = logging.getLogger(__name__)

# The masked kernels; cuDNN's is left out: its plan setup does not survive CUDA graph capture.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache, *, cuda_graphs: bool = False) -> None:
        self.model = model
        self.kv = kv
        self.device = next(model.parameters()).device
        self.forward_passes = 0
        self.graphs = CudaGraphs(kv, self.forward, self.device) if cuda_graphs and self.device.type == "cuda" else None

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
    def run(self, chunks: list[Chunk], *, all_logits: bool = False) -> torch.Tensor:
        """Advance each chunk's sequence by its `n` tokens in ONE forward.

        Returns fp32 logits at each chunk's last token `[len(chunks), vocab]`, or at every token of every
        chunk `[sum(n), vocab]` with `all_logits`.
        """
        shape = exact_shape(chunks)
        graph_shape = None if (self.graphs is None or all_logits) else self.graphs.shape_for(shape)
        logits = None
        if graph_shape is not None:
            plan = plan_tick(chunks, graph_shape)
            try:
                logits = self.graphs.replay(plan)[torch.from_numpy(plan.rows).to(self.device)]
            except RuntimeError:  # a model whose forward cannot be captured still runs, eagerly
                log.exception("event=cuda_graphs_disabled shape=%s", graph_shape)
                self.graphs = None
        if logits is None:
            plan = plan_tick(chunks, shape)
            if all_logits:
                keep = np.concatenate([np.arange(plan.row_last[r] - c.n + 1, plan.row_last[r] + 1)
                                       for r, c in zip(plan.rows, chunks, strict=True)])
            else:
                keep = plan.row_last[plan.rows]
            ids, positions, batch = self.tensors(plan)
            logits = self.forward(ids, positions, batch, torch.from_numpy(keep).to(self.device))
        self.forward_passes += 1
        for chunk in chunks:
            chunk.seq.num_cached += chunk.n
        return logits.float()

"""One forward pass over every pending token of a set of sequences.

Each sequence contributes its pending tokens (a slice prefill, a forecast token, the output channel's
next token). Queries attend to their sequence's visible ancestry and causally to its own tokens, never
to a sibling channel: the 4-D mask of paper Figure 1 (right), extended to many sessions at once. Tokens
sit at their own positions (ancestry length + index), so channels that forked at the same point reuse
position ids, as in a tree. The forward count is measured here, not assumed.

The host side of a tick is a `TickPlan` of `Chunk`s (`plan.py`). On CUDA a plan padded to a bucketed
shape replays a captured graph (`cuda_graphs.py`); otherwise, and for shapes no graph covers, the same
plan at its exact shape runs eagerly. Either way the plan goes to the device as one `Step` and its flat
payload; under tensor parallelism (`parallel.py`) rank 0 sends both to the other ranks, which `execute`
the same step on their shard of the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import paged_decode
from .attention import TickBatch, tick
from .cuda_graphs import CudaGraphs
from .kv_cache import KVCache
from .plan import Chunk, Step, TickPlan, TickShape, exact_shape, pack, plan_tick, unpack
from .slot_table import SlotTable
from .staging import Download, Staging

if TYPE_CHECKING:
    from .parallel import TensorParallel

log = logging.getLogger(__name__)

# The masked kernels; cuDNN's is left out: its plan setup does not survive CUDA graph capture.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache, *, cuda_graphs: bool = False,
                 paged_attention: bool = True, group: TensorParallel | None = None, max_rows: int | None = None,
                 max_keys: int | None = None) -> None:
        """`max_rows`, `max_keys`: the largest tick the graphs must cover (decode rows, keys a row)."""
        self.model = model
        self.kv = kv
        self.group = group  # tensor parallel: rank 0 sends every step to the other ranks, which run it too
        self.device = next(model.parameters()).device
        self.forward_passes = 0
        self.eager_ticks = 0  # ticks on CUDA that no graph covered (each one hundreds of launches from Python)
        # every row reads the pool in place where the kernel runs, through a slot table kept on the device;
        # the gathered reference path otherwise
        self.paged = paged_attention and paged_decode.available(self.device, kv.k[0].shape[-1])
        self.slots = None
        if self.paged:
            decode_rows = max_rows if max_rows is not None else 256
            width = max_keys if max_keys is not None else kv.max_blocks * kv.block_size
            self.slots = SlotTable.sized(decode_rows, width, self.device)
        self.graphs = None
        if cuda_graphs and self.device.type == "cuda":
            limits = {k: v for k, v in (("max_rows", max_rows), ("max_keys", max_keys)) if v is not None}
            self.graphs = CudaGraphs(kv, self.forward, self._batch, self.device, paged=self.paged, **limits)
        self.staging = Staging(self.device)  # pinned memory on CUDA: no copy of a tick blocks the host

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, batch: TickBatch,
                keep: torch.Tensor) -> torch.Tensor:
        """The model over a flat tick: logits `[len(keep), vocab]` at flat token indices `keep`."""
        with tick(batch), sdpa_kernel(SDPA_BACKENDS):
            out = self.model(input_ids=ids[None], position_ids=positions[None], use_cache=False,
                             logits_to_keep=keep)
        return out.logits[0]

    def _batch(self, t: dict[str, torch.Tensor], shape: TickShape) -> TickBatch:
        if self.slots is not None:
            return TickBatch.in_place(self.kv, t["write_slots"], self.slots.table, t["token_rows"], t["positions"],
                                      shape.decode, shape.prefill, shape.width)
        return TickBatch.build(self.kv, t["write_slots"], t["table"], t["key_len"], t["ctx"], t["q_len"], shape.width)

    def tensors(self, plan: TickPlan) -> tuple[torch.Tensor, torch.Tensor, TickBatch]:
        """Device tensors of a plan, as an eager step reads them."""
        step = Step(False, plan.shape, self.kv.num_blocks)
        t = unpack(torch.from_numpy(pack(plan, np.empty(0, dtype=np.int64))).to(self.device), step)
        return t["ids"], t["positions"], self._batch(t, plan.shape)

    @torch.inference_mode()
    def run(self, chunks: list[Chunk], *, all_logits: bool = False, fp32: bool = True,
            feed: torch.Tensor | None = None) -> torch.Tensor:
        """Advance each chunk's sequence by its `n` tokens in ONE forward.

        Returns logits at each chunk's last token `[len(chunks), vocab]`, or at every token of every chunk
        `[sum(n), vocab]` with `all_logits`; in fp32, or in the model's dtype without `fp32` (the sampler
        converts only what it computes with: a whole fp32 copy of a big tick's logits is a gigabyte to move).
        `feed`: the previous tick's chosen tokens on the device, the token of each chunk with `fed` set.
        """
        # read through the device's slot table, the plan has no key dimension and is packed: a row per token
        shape = exact_shape(chunks, packed=self.slots is not None)
        rows_of, rewrites = None, None
        if self.slots is not None:
            rows_of, *written = self.slots.assign(chunks)
            rewrites = (written[0], written[1])
        try:
            logits = self._forward(chunks, shape, all_logits, rows_of, rewrites, feed)
        except BaseException:
            if self.slots is not None:  # what this tick wrote into its rows is unknown: they are written afresh
                self.slots.forget(chunks)
            raise
        self.forward_passes += 1
        for chunk in chunks:
            chunk.seq.num_cached += chunk.n
        return logits.float() if fp32 else logits

    def _forward(self, chunks: list[Chunk], shape: TickShape, all_logits: bool, rows_of: np.ndarray | None,
                 rewrites: tuple[np.ndarray, np.ndarray] | None, feed: torch.Tensor | None) -> torch.Tensor:
        graph_shape = None if (self.graphs is None or all_logits) else self.graphs.shape_for(shape)
        logits = None
        if graph_shape is not None:
            payload = self.staging.payload
            size, extra = Step(True, graph_shape, 0).size, 0 if rewrites is None else 2 * len(rewrites[0])
            out = None if payload is None else payload.take(size + extra).numpy()
            # written straight into the pinned staging buffer, the rewrites after the plan
            plan = plan_tick(chunks, graph_shape, out=out, rows_of=rows_of)
            if out is not None and extra:
                out[size:] = np.concatenate(rewrites)
            rows = self.staging.upload(plan.rows)
            try:
                logits = self.lead(plan, rewrites=rewrites, staged=out, feed=self._feed(plan, feed))[rows]
            except RuntimeError:  # a model whose forward cannot be captured still runs, eagerly
                log.exception("event=cuda_graphs_disabled shape=%s", graph_shape)
                self.graphs = None
        if logits is None:
            self.eager_ticks += self.graphs is not None and not all_logits
            plan = plan_tick(chunks, shape, rows_of=rows_of)
            if all_logits:
                keep = np.concatenate([np.arange(plan.row_last[r] - c.n + 1, plan.row_last[r] + 1)
                                       for r, c in zip(plan.rows, chunks, strict=True)])
            else:
                keep = plan.row_last[plan.rows]
            logits = self.lead(plan, keep, rewrites, feed=self._feed(plan, feed))
        return logits

    def _feed(self, plan: TickPlan, tokens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Where the plan's fed tokens go in its payload, on the device, and the tokens they take."""
        if plan.fed_at is None or not len(plan.fed_at):
            return None
        if tokens is None:
            raise ValueError("a tick with fed chunks needs the previous tick's tokens")
        index = self.staging.upload(np.concatenate([plan.fed_at, plan.fed_from])).view(2, -1)
        return index[0], tokens.index_select(0, index[1]).to(torch.int64)

    def lead(self, plan: TickPlan, keep: np.ndarray | None = None,
             rewrites: tuple[np.ndarray, np.ndarray] | None = None, staged: np.ndarray | None = None,
             feed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Run `plan` as its graph (`keep` None) or eagerly, keeping the logits at flat indices `keep`, after
        writing `rewrites` into the slot table. `staged`: the whole payload, already in pinned memory.
        `feed`: token ids written on the device over the payload's first section (the ids), at these indices.

        In a tensor-parallel group this is rank 0: the step goes to the other ranks first.
        """
        step = Step(keep is None, plan.shape, self.kv.num_blocks, 0 if keep is None else len(keep),
                    0 if rewrites is None else len(rewrites[0]))
        host = torch.from_numpy(staged if staged is not None else pack(plan, keep, rewrites))
        if self.group is not None:
            self.group.send(step)
        payload = self.staging.payload if staged is not None or (plan.flat is not None and keep is None) else None

        def fill(buffer: torch.Tensor) -> None:
            buffer.copy_(host, non_blocking=True)
            if payload is not None:
                payload.mark()  # the staging buffer is rewritten only once this copy has run
            if feed is not None:  # before the broadcast: the other ranks get the fed ids too
                buffer.index_copy_(0, *feed)
            if self.group is not None:
                self.group.broadcast(buffer)

        return self.execute(step, fill)

    @property
    def captures(self) -> int:
        """Graphs captured so far."""
        return 0 if self.graphs is None else self.graphs.captures

    def download(self, t: torch.Tensor) -> Download:
        """Copy a tick's result to the host without waiting for it (`Download.wait` does)."""
        return self.staging.download(t)

    @torch.inference_mode()
    def execute(self, step: Step, fill: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """The forward of `step` on this rank; `fill` writes its payload into the device buffer it is given."""
        self.kv.resize_to(step.num_blocks)  # the pool rank 0 planned against (the others follow its size)
        if step.graph:
            if self.graphs is None:
                raise RuntimeError("a CUDA graph step reached a runner without CUDA graphs")
            g = self.graphs.get(step.shape)
            if not step.rewrites:
                fill(g.buffer)
                return self.graphs.replay(g)
            buffer = torch.empty(step.size, dtype=torch.int64, device=self.device)
            fill(buffer)
            g.buffer.copy_(buffer[: g.buffer.numel()])
            self._rewrite(unpack(buffer, step))
            return self.graphs.replay(g)
        buffer = torch.empty(step.size, dtype=torch.int64, device=self.device)
        fill(buffer)
        t = unpack(buffer, step)
        self._rewrite(t)
        return self.forward(t["ids"], t["positions"], self._batch(t, step.shape), t["keep"])

    def _rewrite(self, t: dict[str, torch.Tensor]) -> None:
        if self.slots is not None:
            self.slots.write(t["rewrite_at"], t["rewrite_slot"])

    def warmup(self, shapes: list[TickShape] | None = None) -> int:
        """Capture the graphs of `shapes` (every shape the graphs cover by default) ahead of traffic, so no
        tick pays for a capture; returns how many were captured.

        Each capture is an all-padding step (it touches the scratch slot only), so every rank of a
        tensor-parallel group captures it too.
        """
        if self.graphs is None:
            return 0
        captured = 0
        for shape in self.graphs.shapes() if shapes is None else shapes:
            padded = self.graphs.shape_for(shape) if self.graphs is not None else None
            if padded is not None and self.graphs is not None and padded not in self.graphs.graphs:
                try:
                    self.lead(plan_tick([], padded))
                except RuntimeError:  # as in `run`: a model whose forward cannot be captured runs eagerly
                    log.exception("event=cuda_graphs_disabled shape=%s", padded)
                    self.graphs = None
                    break
                captured += 1
        return captured

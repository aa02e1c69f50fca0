"""One forward pass over every pending token of a set of sequences, packed into a single row.

Each sequence contributes its pending tokens (a slice prefill, a forecast token, the output channel's
next token). Queries attend to their sequence's visible ancestry and causally to its own tokens, never
to a sibling channel: the 4-D mask of paper Figure 1 (right), extended to many sessions at once. Tokens
sit at their own positions (ancestry length + index), so channels that forked at the same point reuse
position ids, as in a tree. The forward count is measured here, not assumed.
"""

from __future__ import annotations

import torch

from .attention import TickBatch, tick
from .kv_cache import KVCache
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache) -> None:
        self.model = model
        self.kv = kv
        self.device = next(model.parameters()).device
        self.forward_passes = 0

    def _slots(self, seq: Sequence, stop: int) -> torch.Tensor:
        bs = self.kv.block_size
        seq.slots(0, stop)  # allocate
        blocks = torch.tensor(seq.blocks, dtype=torch.long)
        return (blocks[:, None] * bs + torch.arange(bs)).flatten()[:stop]

    def prepare(self, seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor, TickBatch, list[int]]:
        """Input ids, position ids, the pool reads/writes with the mask, and each sequence's row offset."""
        need: dict[Sequence, int] = {}
        for seq in seqs:
            for anc, visible in seq.ancestry():
                need[anc] = max(need.get(anc, 0), visible)
        for seq in seqs:
            need[seq] = len(seq)
        offsets: dict[Sequence, int] = {}
        slots: dict[Sequence, torch.Tensor] = {}
        col = 0
        for seq, n in need.items():
            offsets[seq], slots[seq] = col, self._slots(seq, n)
            col += n

        ids: list[int] = []
        positions: list[torch.Tensor] = []
        writes: list[torch.Tensor] = []
        rows: list[int] = []
        mask = torch.zeros(sum(len(s.pending) for s in seqs), col, dtype=torch.bool)
        for seq in seqs:
            start, n = seq.num_cached, len(seq.pending)
            row = len(ids)
            rows.append(row)
            ids += seq.pending
            positions.append(torch.arange(seq.base + start, seq.base + start + n))
            writes.append(slots[seq][start:])
            block = mask[row : row + n]
            for anc, visible in seq.ancestry():
                block[:, offsets[anc] : offsets[anc] + visible] = True
            own = offsets[seq]
            block[:, own : own + start] = True
            block[:, own + start : own + start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        dev = self.device
        batch = TickBatch(
            kv=self.kv,
            write_slots=torch.cat(writes).to(dev),
            read_slots=torch.cat(list(slots.values())).to(dev),
            mask=mask.to(dev)[None, None],
        )
        return (
            torch.tensor([ids], device=dev),
            torch.cat(positions).to(dev)[None],
            batch,
            rows,
        )

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], *, all_logits: bool = False) -> torch.Tensor:
        """Advance `seqs` by their pending tokens in ONE forward.

        Returns fp32 logits at each sequence's last pending token `[len(seqs), vocab]`, or at every pending
        token `[num_pending, vocab]` with `all_logits`.
        """
        ids, positions, batch, rows = self.prepare(seqs)
        last = torch.tensor([r + len(s.pending) - 1 for r, s in zip(rows, seqs, strict=True)], device=self.device)
        with tick(batch):
            out = self.model(
                input_ids=ids,
                position_ids=positions,
                attention_mask=batch.mask,
                use_cache=False,
                logits_to_keep=0 if all_logits else last,
            )
        self.forward_passes += 1
        for seq in seqs:
            seq.num_cached = len(seq)
        return out.logits[0].float()


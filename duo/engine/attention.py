"""DUO attention: the paged KV pool plus the channel mask, behind transformers' attention interface.

The model computes queries, keys and values as usual (rotary embeddings applied at the explicit position
ids the engine passes); this function writes the tick's keys and values into the pool slots of their
sequences, gathers each row's visible keys through its slot table and applies the channel mask. Outside
an engine tick (training, reference logits) it is plain SDPA, so one loaded model serves both.

On the reference path a tick's tokens are laid out flat in two groups, each a padded batch of rows for SDPA:
- decode rows, one token each (output channels, forecast steps: nearly every row of a busy tick);
- prefill rows (a slice, a closed turn), padded to a common width.
In place every token is a row of its own, so the tick is packed instead (`plan.TickShape`).
A row's slot table lists, in position order, the slots of its visible ancestry and then its own tokens,
so "key l is visible to query j" is `l <= ctx + j`: a tree of channels becomes a batch of plain causal
rows. On CUDA every token reads the pool in place (`paged_decode.py`, a Triton kernel walking its row's
slot table; a prefill token is a row of its own over its prefill row's table, up to its causal limit);
elsewhere the reference path gathers each row's visible keys (O(rows x context), never O(tokens x all
keys)) and runs masked SDPA. Grouped-query heads are folded
into the query length (a key/value head's g query heads become g queries of its row), so no kernel
repeats keys. Padding (rows, query positions, keys) reads and writes the pool's scratch slot only; every
padded query sees exactly that one key, so no row is ever fully masked (which would turn into NaN).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from .kv_cache import KVCache
from .paged_decode import paged_decode

ATTN_IMPLEMENTATION = "duo"


@dataclass
class TickBatch:
    """What one forward pass reads and writes in the pool; device tensors of fixed shape.

    Flat tokens: `decode` rows of one token, then `prefill` rows of `width` tokens each.
    """

    kv: KVCache
    write_slots: torch.Tensor  # [T] pool slot of each token's key/value
    table: torch.Tensor  # [decode + prefill, L] pool slot of each row's key l (paged: the device slot table)
    mask_decode: torch.Tensor  # [decode, 1, 1, L] bool
    mask_prefill: torch.Tensor  # [prefill, 1, width, L] bool
    key_len: torch.Tensor  # [decode] keys each decode row sees
    decode: int
    prefill: int
    width: int
    paged: bool  # every token reads the pool in place (`paged_decode`), not a gathered copy
    token_rows: torch.Tensor | None = None  # paged: [T] the slot-table row of each token
    token_keys: torch.Tensor | None = None  # paged: [T] the keys each token sees (its causal limit)

    @classmethod
    def build(cls, kv: KVCache, write_slots: torch.Tensor, table: torch.Tensor, key_len: torch.Tensor,
              ctx: torch.Tensor, q_len: torch.Tensor, width: int) -> TickBatch:
        """Masks from lengths, on the device (inside a CUDA graph when captured), for the reference path.

        `key_len[r]`: keys a decode row sees (itself included); `ctx[p]`, `q_len[p]`: keys before a prefill
        row's tokens and its real token count.
        """
        decode, prefill = key_len.shape[0], ctx.shape[0]
        cols = torch.arange(table.shape[1], device=table.device)
        mask_decode = (cols < key_len[:, None])[:, None, None, :]
        j = torch.arange(width, device=table.device)
        limit = torch.where(j < q_len[:, None], ctx[:, None] + j + 1, 1)  # padded queries see key 0 only
        mask_prefill = (cols < limit[..., None])[:, None]
        return cls(kv, write_slots, table, mask_decode, mask_prefill, key_len, decode, prefill, width, False)

    @classmethod
    def in_place(cls, kv: KVCache, write_slots: torch.Tensor, slot_table: torch.Tensor, token_rows: torch.Tensor,
                 positions: torch.Tensor, decode: int, prefill: int, width: int) -> TickBatch:
        """For the kernel: each token's own slot is written into its row of the device slot table, at its
        position (the one key of its row the table did not hold yet), and it sees the keys up to that one.
        A padded token (row 0, position 0, the scratch slot) sees the scratch slot alone."""
        slot_table[token_rows, positions] = write_slots.to(slot_table.dtype)
        none = torch.empty(0, dtype=torch.bool, device=slot_table.device)
        return cls(kv, write_slots, slot_table, none, none, none, decode, prefill, width, True, token_rows,
                   positions + 1)


_active: TickBatch | None = None


@contextmanager
def tick(batch: TickBatch) -> Iterator[None]:
    global _active
    _active = batch
    try:
        yield
    finally:
        _active = None


def duo_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    b = _active
    if b is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    k_pool, v_pool = b.kv.k[module.layer_idx], b.kv.v[module.layer_idx]
    k_pool.index_copy_(0, b.write_slots, key[0].transpose(0, 1).to(k_pool.dtype))
    v_pool.index_copy_(0, b.write_slots, value[0].transpose(0, 1).to(v_pool.dtype))
    q = query[0].transpose(0, 1)  # [T, heads, head_dim]
    heads, head_dim = q.shape[1], q.shape[2]
    kv_heads = k_pool.shape[1]
    g = heads // kv_heads  # query heads per key/value head, folded into the query length below
    d, p, w = b.decode, b.prefill, b.width
    if b.paged:
        assert b.token_rows is not None and b.token_keys is not None
        out = paged_decode(q, k_pool, v_pool, b.table, b.token_keys, scaling or head_dim**-0.5, b.token_rows)
        return out[None], None
    keys = k_pool[b.table].transpose(1, 2)  # [rows, kv_heads, L, head_dim]
    values = v_pool[b.table].transpose(1, 2)
    parts = []
    if d:  # [d, kv_heads, g, head_dim]: each kv head's query group as g queries of one row
        out = F.scaled_dot_product_attention(q[:d].view(d, kv_heads, g, head_dim), keys[:d], values[:d],
                                             attn_mask=b.mask_decode, scale=scaling)
        parts.append(out.reshape(d, heads, head_dim))
    if p:  # [p, kv_heads, g * w, head_dim], the mask repeated for each query head of a group
        qp = q[d:].view(p, w, kv_heads, g, head_dim).permute(0, 2, 3, 1, 4).reshape(p, kv_heads, g * w, head_dim)
        mask = b.mask_prefill[:, :, None].expand(p, 1, g, w, -1).reshape(p, 1, g * w, -1)
        out = F.scaled_dot_product_attention(qp, keys[d:], values[d:], attn_mask=mask, scale=scaling)
        parts.append(out.view(p, kv_heads, g, w, head_dim).permute(0, 3, 1, 2, 4).reshape(p * w, heads, head_dim))
    return torch.cat(parts)[None], None


def register_attention() -> None:
    AttentionInterface.register(ATTN_IMPLEMENTATION, duo_attention)

"""DUO attention: the paged KV pool plus the channel mask, behind transformers' attention interface.

The model computes queries, keys and values as usual (rotary embeddings applied at the explicit
position ids the engine passes); this function writes the tick's keys and values into the pool slots of
their sequences, gathers the slots this tick reads and applies the 4-D channel mask. Outside an engine
tick (training, evaluation of reference logits) it is plain SDPA, so one loaded model serves both.
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

ATTN_IMPLEMENTATION = "duo"


@dataclass
class TickBatch:
    """What one forward pass reads and writes in the pool."""

    kv: KVCache
    write_slots: torch.Tensor  # [Q] pool slot of each query token
    read_slots: torch.Tensor  # [K] pool slots visible to some query this tick
    mask: torch.Tensor  # [1, 1, Q, K] bool: query q may attend to read slot k


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
    batch = _active
    if batch is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    layer = module.layer_idx
    k_pool, v_pool = batch.kv.k[layer], batch.kv.v[layer]
    k_pool[batch.write_slots] = key[0].transpose(0, 1).to(k_pool.dtype)
    v_pool[batch.write_slots] = value[0].transpose(0, 1).to(v_pool.dtype)
    keys = k_pool[batch.read_slots].transpose(0, 1).unsqueeze(0)
    values = v_pool[batch.read_slots].transpose(0, 1).unsqueeze(0)
    out = F.scaled_dot_product_attention(
        query, keys, values, attn_mask=batch.mask, scale=scaling, enable_gqa=keys.shape[1] != query.shape[1]
    )
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    AttentionInterface.register(ATTN_IMPLEMENTATION, duo_attention)

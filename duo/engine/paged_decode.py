"""Attention that reads the paged KV pool in place (a Triton kernel), for decode and prefill tokens alike.

The reference path (`attention.py`) gathers every decode row's keys and values into a dense
`[rows, L, kv_heads, head_dim]` copy and runs masked SDPA over it: the KV bytes of a tick are read, written
and read again. Here one program per (row, key/value head, key split) walks the row's slot table and loads
each visible key straight from the pool, with the row's query heads of that key/value head as one small
matrix (grouped-query attention without repeating keys), and an online softmax; a long row's keys are cut
into splits that run in parallel and are merged after (flash-decoding), so a tick of few rows still fills
the GPU; each row divides its own keys among the splits. Keys past a row's `key_len` are never loaded:
padding costs nothing.

Every token is a query row of its own here: it reads its sequence's row of the slot table (`rows_of`; in the
engine the device's persistent table, `slot_table.py`) up to its causal limit (position + 1), which is the
mask of the reference path. So a tick's every token, decode or prefill, is attended in one launch with no
gathered copy; a prefill row's tokens read the same keys, mostly from L2.

Triton is optional: without it, or off CUDA, the reference path runs. Tests run this kernel on CPU
tensors through Triton's interpreter (`TRITON_INTERPRET=1` before Triton is imported, and `ON_CPU`) and
compare it with the reference.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch

BLOCK_N = 64  # keys per inner step
MIN_PROGRAMS = 1024  # split long rows until a tick has about this many programs (132 SMs x a few waves)
MIN_KEYS_PER_SPLIT = 256
# CPU tensors take the kernel only when asked (tests): interpreted, it is far slower than the reference.
ON_CPU = False


def available(device: torch.device, head_dim: int) -> bool:
    """Whether the kernel can serve attention on `device` (CUDA and Triton present, head_dim a power of 2)."""
    if head_dim < 16 or head_dim & (head_dim - 1) or _triton() is None:
        return False
    return device.type == "cuda" or (ON_CPU and interpreted())


def interpreted() -> bool:
    """Triton runs kernels on the CPU, through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _triton() -> Any:
    try:
        import triton
    except ImportError:
        return None
    return triton


@functools.cache
def _kernel() -> Any:
    """The kernel, defined on first use (nothing is compiled where it never runs)."""
    triton = _triton()
    import triton.language as tl

    @triton.jit
    def paged_decode(Q, K, V, Table, Rows, KeyLen, Out, Max, Sum, scale,
                     stride_qr, stride_qh, stride_ks, stride_kh, stride_tr, stride_or, stride_oh, stride_os,
                     GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
                     HEAD_DIM: tl.constexpr, SPLIT: tl.constexpr, MIN_SPLIT: tl.constexpr):
        row = tl.program_id(0)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        n_keys = tl.load(KeyLen + row)
        table_row = tl.load(Rows + row)
        # this row's own keys spread over the splits (never fewer than MIN_SPLIT a split): the table may be
        # as wide as the context window, far past what the row sees
        per_split = tl.maximum(tl.cdiv(tl.cdiv(n_keys, tl.num_programs(2)), BLOCK_N) * BLOCK_N, MIN_SPLIT)
        start = split * per_split
        end = tl.minimum(start + per_split, n_keys)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, HEAD_DIM)
        heads = kv_head * GROUP + g
        in_group = g < GROUP
        q = tl.load(Q + row * stride_qr + heads[:, None] * stride_qh + d[None, :], mask=in_group[:, None], other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
        acc = tl.zeros([BLOCK_G, HEAD_DIM], dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            valid = n < end
            slot = tl.load(Table + table_row * stride_tr + n, mask=valid, other=0).to(tl.int64)
            at = slot[:, None] * stride_ks + kv_head * stride_kh + d[None, :]
            k = tl.load(K + at, mask=valid[:, None], other=0.0)
            qk = tl.dot(q, tl.trans(k)).to(tl.float32) * scale
            qk = tl.where(valid[None, :], qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.exp(qk - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + at, mask=valid[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
            m_i = m_new
        out = Out + row * stride_or + heads[:, None] * stride_oh + d[None, :]
        if SPLIT:  # unnormalized partials, merged by `_merge`
            tl.store(out + split * stride_os, acc, mask=in_group[:, None])
            at_stat = (row * tl.num_programs(1) * GROUP + heads) * tl.num_programs(2) + split
            tl.store(Max + at_stat, m_i, mask=in_group)
            tl.store(Sum + at_stat, l_i, mask=in_group)
        else:
            tl.store(out, (acc / l_i[:, None]).to(Out.dtype.element_ty), mask=in_group[:, None])

    return paged_decode


def splits_for(rows: int, kv_heads: int, keys: int) -> int:
    """Key splits per row: enough programs to fill the GPU, never splits shorter than MIN_KEYS_PER_SPLIT.

    A function of the tick's (bucketed) shape only, so a captured graph always launches the same grid.
    """
    programs = max(1, rows * kv_heads)
    want = math.ceil(MIN_PROGRAMS / programs)
    return max(1, min(want, keys // MIN_KEYS_PER_SPLIT))


def paged_decode(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, table: torch.Tensor,
                 key_len: torch.Tensor, scale: float, rows_of: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of query rows over their visible keys, read in place from the pool.

    `q` `[rows, heads, head_dim]` (one token a row), `k_pool`/`v_pool` `[slots, kv_heads, head_dim]`, `table`
    `[table rows, L]` the pool slot of each table row's key l, `rows_of` `[rows]` the table row each query
    row reads (default: its own), `key_len` `[rows]` the keys each query row sees (at least 1).
    Returns `[rows, heads, head_dim]` in `q`'s dtype.
    """
    rows, heads, head_dim = q.shape
    if rows_of is None:
        rows_of = torch.arange(rows, device=q.device)
    kv_heads = k_pool.shape[1]
    group = heads // kv_heads  # q may be a strided view: the kernel takes its row and head strides
    splits = splits_for(rows, kv_heads, table.shape[1])
    block_g = max(16, 1 << (group - 1).bit_length())
    kernel = _kernel()
    if q.stride(-1) != 1:
        q = q.contiguous()
    if splits == 1:
        out = torch.empty_like(q)
        part, mx, sm = out[:, :, None], out, out  # statistics unused
    else:
        part = torch.empty(rows, heads, splits, head_dim, dtype=torch.float32, device=q.device)
        mx = torch.empty(rows, heads, splits, dtype=torch.float32, device=q.device)
        sm = torch.empty_like(mx)
    kernel[(rows, kv_heads, splits)](
        q, k_pool, v_pool, table, rows_of, key_len, part, mx, sm, scale,
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), table.stride(0),
        part.stride(0), part.stride(1), part.stride(2),
        GROUP=group, BLOCK_G=block_g, BLOCK_N=BLOCK_N, HEAD_DIM=head_dim, SPLIT=splits > 1,
        MIN_SPLIT=MIN_KEYS_PER_SPLIT,
    )
    if splits == 1:
        return out
    return _merge(part, mx, sm).to(q.dtype)


def _merge(part: torch.Tensor, mx: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted sum of the splits' partials (an empty split has max -inf and weighs nothing)."""
    top = mx.amax(-1, keepdim=True)
    w = torch.exp(mx - top)
    return (part * w[..., None]).sum(-2) / (sm * w).sum(-1)[..., None]

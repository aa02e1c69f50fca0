"""Fused decoder layers: fewer, larger kernels per layer for the engine on CUDA.

transformers' Llama / Qwen2 layers run q, k and v as three matrix multiplies, the MLP's gate and up as two,
and RMSNorm, the rotary embedding and SiLU x up as chains of elementwise kernels (an fp32 copy, a square, a
mean, a cat of halves, ...): at 7B and 768 sessions on an H200 those took 9.5 of the GPU's 44 ms a tick, 3.4
fused (docs/benchmarks.md). `fuse(model)` gives each layer one multiply for q/k/v and one for gate/up (the
projections' weights become views of one concatenated weight, so nothing is held twice and the original
modules still work) and one Triton kernel each (`fused_kernels.py`) for the norm, the rotary embedding and
SiLU x up. The kernels round to the model's dtype exactly where transformers' ops do and give their bits;
a concatenated multiply may sum in another order than the separate ones (cuBLAS picks kernels by shape).
Without Triton, off CUDA, or where autograd follows a tensor, the fused modules run the same steps as torch
ops. For inference: the concatenated weights are frozen.

A layer is fused only where it is exactly the Llama / Qwen2 shape (no q/k norms, SiLU, full rotary);
anything else is left as it is.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import paged_decode

log = logging.getLogger(__name__)

ATTENTIONS = {"LlamaAttention", "Qwen2Attention", "MistralAttention"}
MLPS = {"LlamaMLP", "Qwen2MLP", "MistralMLP"}
NORMS = {"LlamaRMSNorm", "Qwen2RMSNorm", "MistralRMSNorm"}
CACHE_ARGS = ("cache", "past_key_values", "past_key_value")  # a cache's name across transformers 5.x


def _kernels_on(t: torch.Tensor) -> bool:
    """Whether the Triton kernels serve `t` (on its device, as the paged attention kernel decides); they have
    no backward, so a tensor autograd follows takes the torch steps."""
    return paged_decode.available(t.device, 16) and not (t.requires_grad and torch.is_grad_enabled())


def _concat(*linears: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several projections of one input; theirs become views of it."""
    weight = torch.cat([m.weight.data for m in linears])
    bias = None
    if linears[0].bias is not None:
        bias = torch.cat([m.bias.data for m in linears])
    at = 0
    for m in linears:
        n = m.weight.shape[0]
        m.weight = nn.Parameter(weight[at:at + n], requires_grad=False)
        if bias is not None:
            m.bias = nn.Parameter(bias[at:at + n], requires_grad=False)
        at += n
    return weight, bias


class FusedRMSNorm(nn.Module):
    """transformers' RMSNorm in one kernel: fp32 statistics, rounded to the input's dtype, times the weight."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.weight = norm.weight
        self.variance_epsilon = float(norm.variance_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _kernels_on(x) or x.shape[-1] > 16384:
            h = x.float()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return self.weight * h.to(x.dtype)
        rows = x.reshape(-1, x.shape[-1])
        if rows.stride(-1) != 1:
            rows = rows.contiguous()
        out = torch.empty(rows.shape, dtype=torch.promote_types(self.weight.dtype, x.dtype), device=x.device)
        n = rows.shape[-1]
        _kernels()["rms_norm"][(rows.shape[0],)](rows, self.weight, out, rows.stride(0), n, self.variance_epsilon,
                                                 BLOCK=_pow2(n), X_BF16=x.dtype == torch.bfloat16,
                                                 OUT_BF16=out.dtype == torch.bfloat16)
        return out.view(*x.shape[:-1], n)


class FusedMLP(nn.Module):
    """gate and up as one multiply, SiLU(gate) x up in one kernel, then down."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp
        self.weight, self.bias = _concat(mlp.gate_proj, mlp.up_proj)
        self.inner = mlp.gate_proj.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = F.linear(x, self.weight, self.bias)
        return self.mlp.down_proj(silu_mul(gate_up, self.inner))


class FusedAttention(nn.Module):
    """q, k and v as one multiply and the rotary embedding of q and k in one kernel, then the model's attention
    function (DUO's inside an engine tick) and o_proj, as transformers' attention does.

    A call with a key/value cache (transformers' own generation, the benches' baseline) runs the wrapped
    module as it is: its projections are views of the fused weight.
    """

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.weight, self.bias = _concat(attn.q_proj, attn.k_proj, attn.v_proj)
        self.head_dim = attn.head_dim
        self.heads = attn.q_proj.weight.shape[0] // attn.head_dim
        self.kv_heads = attn.k_proj.weight.shape[0] // attn.head_dim

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        if any(kwargs.get(name) is not None for name in CACHE_ARGS):
            return self.attn(hidden_states, position_embeddings=position_embeddings,
                             attention_mask=attention_mask, **kwargs)
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        a = self.attn
        if a.config._attn_implementation not in ALL_ATTENTION_FUNCTIONS:  # transformers' eager attention
            return a(hidden_states, position_embeddings=position_embeddings, attention_mask=attention_mask, **kwargs)
        for unused in CACHE_ARGS:
            kwargs.pop(unused, None)
        shape, d, h, kvh = hidden_states.shape[:-1], self.head_dim, self.heads, self.kv_heads
        qkv = F.linear(hidden_states, self.weight, self.bias).view(-1, (h + 2 * kvh) * d)
        cos, sin = (t.expand(*shape, t.shape[-1]).reshape(-1, t.shape[-1]) for t in position_embeddings)  # per token
        q, k = rotary(qkv, cos, sin, h, kvh, d)
        v = qkv[:, (h + kvh) * d:].view(*shape, kvh, d)
        attention = ALL_ATTENTION_FUNCTIONS[a.config._attn_implementation]
        out, weights = attention(a, q.view(*shape, h, d).transpose(1, 2), k.view(*shape, kvh, d).transpose(1, 2),
                                 v.transpose(1, 2), attention_mask, dropout=0.0, scaling=a.scaling,
                                 sliding_window=getattr(a, "sliding_window", None), **kwargs)
        return a.o_proj(out.reshape(*shape, -1).contiguous()), weights


def silu_mul(gate_up: torch.Tensor, inner: int) -> torch.Tensor:
    """SiLU(gate) x up of `[..., 2 * inner]` (gate first), each product rounded to the dtype as torch's ops do."""
    if not _kernels_on(gate_up):
        return F.silu(gate_up[..., :inner]) * gate_up[..., inner:]
    rows = gate_up.reshape(-1, 2 * inner)
    out = torch.empty(rows.shape[0], inner, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _kernels()["silu_mul"][(rows.shape[0], _cdiv(inner, block))](rows, out, rows.stride(0), inner, BLOCK=block,
                                                                 BF16=gate_up.dtype == torch.bfloat16)
    return out.view(*gate_up.shape[:-1], inner)


def rotary(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, kv_heads: int,
           head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary embedding of the q and k heads of flat `qkv` `[T, (heads + 2 kv_heads) head_dim]` at each
    token's `cos`, `sin` `[T, head_dim]`: `[T, heads, head_dim]` and `[T, kv_heads, head_dim]`.

    As transformers: `x * cos + rotate_half(x) * sin`, each product and the sum rounded to the dtype."""
    t = qkv.shape[0]
    if not _kernels_on(qkv) or cos.shape[-1] != head_dim or head_dim & (head_dim - 1):
        half = head_dim // 2
        out = []
        for x in (qkv[:, : heads * head_dim].view(t, heads, head_dim),
                  qkv[:, heads * head_dim:(heads + kv_heads) * head_dim].view(t, kv_heads, head_dim)):
            turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
            out.append(x * cos[:, None] + turned * sin[:, None])
        return out[0], out[1]
    q = torch.empty(t, heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    k = torch.empty(t, kv_heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    cos, sin = cos.contiguous(), sin.contiguous()
    _kernels()["rotary"][(t, heads + kv_heads)](qkv, cos, sin, q, k, qkv.stride(0), heads, HALF=head_dim // 2,
                                                 BF16=qkv.dtype == torch.bfloat16)
    return q, k


def fuse(model: nn.Module) -> int:
    """Swap the decoder layers' attention, MLP and norms for fused ones where they have the Llama / Qwen2
    shape; returns how many modules were swapped."""
    config = getattr(model, "config", None)
    if getattr(config, "hidden_act", None) != "silu":
        return 0
    swapped = 0
    for parent in list(model.modules()):
        if isinstance(parent, FUSED):  # already fused: the module it wraps stays as it is
            continue
        for name, child in list(parent.named_children()):
            kind = type(child).__name__
            fused: nn.Module | None = None
            if kind in ATTENTIONS and _plain(child, {"q_proj", "k_proj", "v_proj", "o_proj"}):
                fused = FusedAttention(child)
            elif kind in MLPS and _plain(child, {"gate_proj", "up_proj", "down_proj", "act_fn"}):
                fused = FusedMLP(child)
            elif kind in NORMS and hasattr(child, "variance_epsilon"):
                fused = FusedRMSNorm(child)
            if fused is not None:
                setattr(parent, name, fused)
                swapped += 1
    log.info("event=fused_layers modules=%d", swapped)
    return swapped


FUSED = (FusedAttention, FusedMLP, FusedRMSNorm)


def _plain(module: nn.Module, children: set[str]) -> bool:
    """The module holds exactly these children, its projections plain linear layers of one dtype."""
    names = {n for n, _ in module.named_children()}
    return names == children and all(isinstance(m, nn.Linear) and m.weight.dtype == next(module.parameters()).dtype
                                     for n, m in module.named_children() if n != "act_fn")


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.cache
def _kernels() -> dict[str, Any]:
    """The kernels, imported on first use (nothing is compiled where they never run)."""
    from . import fused_kernels

    return {"rms_norm": fused_kernels.rms_norm, "silu_mul": fused_kernels.silu_mul, "rotary": fused_kernels.rotary}

"""The Triton kernels of `fused.py`: RMSNorm, SiLU x up and the rotary embedding, one program per row (and
per head, or per block of columns). Imported only where a kernel runs, so Triton is needed only there.

Each computes in fp32 and rounds to the model's dtype exactly where transformers' ops round; a bf16
rounding is done in bit arithmetic (`rounded`), so that it is the same compiled, where a plain round trip
was not always kept, and in Triton's interpreter, whose casts truncate.
"""

import triton
import triton.language as tl


@triton.jit
def rounded(x, BF16: tl.constexpr):
    """fp32 `x` rounded to nearest-even at bf16's precision, still fp32, in bit arithmetic: compiled for an
    H200, a plain fp32 -> bf16 -> fp32 round trip between the rotary's multiplies and its add left a quarter
    of its outputs a last bit off torch's, as if it did not round. Other dtypes keep the cast."""
    if BF16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return bits.to(tl.float32, bitcast=True)
    else:
        return x


@triton.jit
def rms_norm(X, W, Out, stride_x, n, eps, BLOCK: tl.constexpr, X_BF16: tl.constexpr, OUT_BF16: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < n
    x = tl.load(X + row * stride_x + cols, mask=inside, other=0.0).to(tl.float32)
    r = tl.rsqrt(tl.sum(x * x, 0) / n + eps)
    h = rounded(x * r, X_BF16).to(X.dtype.element_ty)  # transformers rounds to the input's dtype, then weighs
    w = tl.load(W + cols, mask=inside, other=0.0)
    y = rounded(h.to(tl.float32) * w.to(tl.float32), OUT_BF16).to(Out.dtype.element_ty)
    tl.store(Out + row * n + cols, y, mask=inside)


@triton.jit
def silu_mul(X, Out, stride_x, inner, BLOCK: tl.constexpr, BF16: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < inner
    g = tl.load(X + row * stride_x + cols, mask=inside, other=0.0).to(tl.float32)
    u = tl.load(X + row * stride_x + inner + cols, mask=inside, other=0.0)
    s = rounded(g / (1.0 + tl.exp(-g)), BF16).to(X.dtype.element_ty)
    y = rounded(s.to(tl.float32) * u.to(tl.float32), BF16).to(Out.dtype.element_ty)
    tl.store(Out + row * inner + cols, y, mask=inside)


@triton.jit
def rotary(QKV, Cos, Sin, Q, K, stride_x, heads, HALF: tl.constexpr, BF16: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    d = tl.arange(0, HALF)
    src = QKV + t * stride_x + head * 2 * HALF
    x1 = tl.load(src + d).to(tl.float32)
    x2 = tl.load(src + HALF + d).to(tl.float32)
    c1 = tl.load(Cos + t * 2 * HALF + d).to(tl.float32)
    c2 = tl.load(Cos + t * 2 * HALF + HALF + d).to(tl.float32)
    s1 = tl.load(Sin + t * 2 * HALF + d).to(tl.float32)
    s2 = tl.load(Sin + t * 2 * HALF + HALF + d).to(tl.float32)
    ty = QKV.dtype.element_ty
    # rotate_half(x) = (-x2, x1); each product and the sum rounded as torch's elementwise ops round
    y1 = rounded(rounded(x1 * c1, BF16).to(ty).to(tl.float32) + rounded(-x2 * s1, BF16).to(ty).to(tl.float32),
                 BF16).to(ty)
    y2 = rounded(rounded(x2 * c2, BF16).to(ty).to(tl.float32) + rounded(x1 * s2, BF16).to(ty).to(tl.float32),
                 BF16).to(ty)
    if head < heads:
        dst = Q + (t * heads + head) * 2 * HALF
    else:
        dst = K + (t * (tl.num_programs(1) - heads) + head - heads) * 2 * HALF
    tl.store(dst + d, y1)
    tl.store(dst + HALF + d, y2)

"""Fused decoder layers compute what transformers' layers compute: each kernel against its torch steps, a
fused model against the unfused one, and the engine's replies with fused layers against those without.

On a CPU the kernels run through Triton's interpreter (the `interpreted` fixture); on a GPU compiled, in bf16.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from duo.engine import fused
from duo.engine import paged_decode as pd
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig
from duo.engine.llm_engine import Engine
from duo.engine.loader import load_backbone

from .helpers import rel_err, run_until_idle, tiny_qwen2

triton = pytest.importorskip("triton", reason="the fused kernels need Triton (installed with the dev extra)")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def qwen2_path(tmp_path_factory: pytest.TempPathFactory, embedded_path: Path) -> Path:
    """A tiny random Qwen2 whose biases and norm weights are not their 0 / 1 starts."""
    return tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), embedded_path, seed=1, spread=True)


def _pair(path: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = load_backbone(str(path), adapter=None, device="cpu").model
    plain = copy.deepcopy(model)
    assert fused.fuse(model) == 2 * 2 + 2 * 2 + 1  # per layer: attention, MLP, two norms; the final norm
    assert fused.fuse(model) == 0  # fusing twice changes nothing
    return plain, model


@pytest.mark.parametrize("model_kind", ["llama", "qwen2"])
def test_a_fused_model_gives_the_plain_models_logits(model_kind: str, tiny_model_path: Path,
                                                     qwen2_path: Path) -> None:
    """The torch steps of the fused modules (no kernels): a batch of two sequences, with a padding mask and with
    one row of positions for both."""
    plain, model = _pair(tiny_model_path if model_kind == "llama" else qwen2_path)
    ids = torch.randint(0, 500, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    same = torch.arange(9)[None]  # one row of positions for the batch: the rotary tables broadcast over it
    # no cache: with one, the fused attention hands the call to the module it wraps
    for kwargs in ({"attention_mask": mask}, {"position_ids": same}):
        with torch.no_grad():
            a, b = (m(input_ids=ids, use_cache=False, **kwargs).logits for m in (plain, model))
        assert rel_err(a, b) < 1e-5
    # the projections are views of the fused weights: the wrapped modules hold no second copy
    attn = model.model.layers[0].self_attn
    assert attn.attn.k_proj.weight.data_ptr() == attn.weight[attn.heads * attn.head_dim:].data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_kernel_equals_its_torch_steps(interpreted, monkeypatch: pytest.MonkeyPatch,
                                            dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    t, heads, kv_heads, d, inner = 5, 4, 2, 16, 40
    qkv = torch.randn(t, (heads + 2 * kv_heads) * d, generator=g).to(dtype)
    cos, sin = torch.randn(t, d, generator=g).to(dtype), torch.randn(t, d, generator=g).to(dtype)
    gate_up = (3 * torch.randn(t, 2 * inner, generator=g)).to(dtype)
    x = (2 * torch.randn(t, 48, generator=g)).to(dtype)
    norm = torch.nn.Module()
    norm.weight, norm.variance_epsilon = torch.nn.Parameter(torch.randn(48, generator=g).to(dtype)), 1e-6
    rms = fused.FusedRMSNorm(norm)
    with torch.no_grad():
        kernels = (fused.rotary(qkv, cos, sin, heads, kv_heads, d), fused.silu_mul(gate_up, inner), rms(x))
        monkeypatch.setattr(pd, "ON_CPU", False)  # the torch steps
        steps = (fused.rotary(qkv, cos, sin, heads, kv_heads, d), fused.silu_mul(gate_up, inner), rms(x))
    (qa, ka), sa, na = kernels
    (qb, kb), sb, nb = steps
    for a, b in ((qa, qb), (ka, kb), (sa, sb), (na, nb)):
        assert a.shape == b.shape and a.dtype == b.dtype
        if dtype == torch.bfloat16:  # each product, sum and norm rounded where torch rounds: the same bits
            assert torch.equal(a, b)
        else:  # the interpreter's exp and rsqrt are NumPy's, torch's its own: the last bits of fp32 differ
            assert rel_err(a, b) < 1e-6


def test_the_engine_replies_the_same_with_fused_layers(interpreted, monkeypatch: pytest.MonkeyPatch,
                                                       qwen2_path: Path) -> None:
    """Greedy replies, forecasts and states of sessions whose channels fork, roll back and promote, through
    the kernels, against the same model unfused (attention on the gathered path in both)."""
    launches: list[str] = []
    kernels = fused._kernels()
    monkeypatch.setattr(fused, "_kernels", lambda: {name: _counted(k, name, launches) for name, k in kernels.items()})
    runs = []
    for fuse in (True, False):
        config = EngineConfig(fused_layers=fuse, paged_attention=False)
        engine = Engine(load_backbone(str(qwen2_path), adapter=None, device="cpu"), config)
        assert isinstance(engine.backbone.model.model.layers[0].mlp, fused.FusedMLP) == fuse
        sessions = [engine.open_session(SessionConfig(sampling=SamplingParams(max_new_tokens=3))) for _ in range(2)]
        for i, s in enumerate(sessions):
            s.push_slice(f"question number {i} about")
        events = run_until_idle(engine)
        sessions[0].push_slice("the weather tomorrow")
        events += run_until_idle(engine)
        runs.append([(type(e).__name__, getattr(e, "delta", None), getattr(e, "state", None)) for e in events])
    assert runs[0] == runs[1]
    assert any(name == "StateDecided" for name, *_ in runs[0])
    assert {"rms_norm", "rotary", "silu_mul"} <= set(launches)  # the fused run went through every kernel


def _counted(kernel: Any, name: str, launches: list[str]) -> Any:
    """A kernel whose launches (`kernel[grid](...)`) are recorded by name."""

    class Launcher:
        def __getitem__(self, grid: Any) -> Any:
            launches.append(name)
            return kernel[grid]

    return Launcher()


def test_a_tensor_autograd_follows_takes_the_torch_steps(interpreted) -> None:
    """The kernels have no backward: a norm over a tensor that needs its gradient must still give one."""
    norm = torch.nn.Module()
    norm.weight, norm.variance_epsilon = torch.nn.Parameter(torch.ones(16)), 1e-6
    x = torch.randn(3, 16, requires_grad=True)
    fused.FusedRMSNorm(norm)(x).sum().backward()
    assert x.grad is not None and norm.weight.grad is not None


def test_layers_of_another_shape_are_left_alone(qwen2_path: Path) -> None:
    model = load_backbone(str(qwen2_path), adapter=None, device="cpu").model
    model.config.hidden_act = "gelu"  # not SiLU: the MLP kernel would be wrong
    assert fused.fuse(model) == 0


@cuda
@pytest.mark.gpu
def test_compiled_kernels_equal_the_torch_steps_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    kw = {"device": "cuda", "generator": g}
    t, heads, kv_heads, d, inner, hidden = 700, 28, 4, 128, 18944, 3584
    qkv = torch.randn(t, (heads + 2 * kv_heads) * d, **kw).bfloat16()
    cos, sin = torch.randn(t, d, **kw).bfloat16(), torch.randn(t, d, **kw).bfloat16()
    gate_up = torch.randn(t, 2 * inner, **kw).bfloat16()
    norm = torch.nn.Module()
    norm.weight, norm.variance_epsilon = torch.nn.Parameter(torch.randn(hidden, **kw).bfloat16()), 1e-6
    rms, x = fused.FusedRMSNorm(norm), torch.randn(t, hidden, **kw).bfloat16()
    with torch.no_grad():
        kernels = (*fused.rotary(qkv, cos, sin, heads, kv_heads, d), fused.silu_mul(gate_up, inner), rms(x))
        monkeypatch.setattr(fused, "_kernels_on", lambda _t: False)
        steps = (*fused.rotary(qkv, cos, sin, heads, kv_heads, d), fused.silu_mul(gate_up, inner), rms(x))
    for a, b in zip(kernels, steps, strict=True):  # rounded where torch's ops round: the same bits
        assert torch.equal(a, b)

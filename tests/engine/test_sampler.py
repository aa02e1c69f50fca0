"""Sampling a tick's rows: groups drawn together keep each row's own distribution and nucleus, greedy rows
stay argmax, and a seeded row repeats its draws whatever else the tick holds."""

from __future__ import annotations

import pytest
import torch

from duo.engine.config import SamplingParams
from duo.engine.sampler import choose, filtered_probs, rows

STATES = [3, 4, 5]


def _one_row(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """The nucleus of one row, computed on its own (the definition the batched version must match)."""
    probs = (logits / p.temperature).softmax(dim=-1)
    order = probs.argsort(descending=True)
    mass = probs[order].cumsum(0) - probs[order]
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep[order[mass <= p.top_p]] = True
    return torch.where(keep, probs, 0.0)


def test_a_groups_nucleus_is_each_rows_own() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 500, generator=g) * torch.linspace(0.5, 6.0, 32)[:, None]  # flat to peaked rows
    for p in (SamplingParams(temperature=0.7, top_p=0.9), SamplingParams(temperature=1.3, top_p=0.5),
              SamplingParams(temperature=1.0)):
        batched = filtered_probs(logits, p)
        for r in range(len(logits)):
            assert torch.allclose(batched[r], _one_row(logits[r], p), atol=1e-7)


def test_greedy_rows_take_the_argmax_and_sampled_rows_stay_inside_their_nucleus() -> None:
    torch.manual_seed(0)
    logits = torch.randn(64, 300)
    nucleus = SamplingParams(temperature=1.0, top_p=0.3)
    params = [None if r % 3 == 0 else SamplingParams() if r % 3 == 1 else nucleus for r in range(64)]
    allowed = filtered_probs(logits, nucleus) > 0
    for _ in range(20):
        tokens, probs = rows(choose(logits, params, [None] * 64, STATES).numpy())
        for r, token in enumerate(tokens):
            if params[r] is None or params[r].greedy:
                assert token == int(logits[r].argmax())
            else:
                assert allowed[r, token]
        assert torch.allclose(torch.from_numpy(probs), logits[:, STATES].softmax(-1))


def test_a_group_draws_each_row_from_its_own_distribution() -> None:
    torch.manual_seed(1)
    n = 4000
    logits = torch.full((n, 4), -30.0)
    logits[: n // 2, 0], logits[: n // 2, 1] = 0.0, float(torch.log(torch.tensor(3.0)))  # 1/4 : 3/4
    logits[n // 2 :, 2] = 0.0  # a single token
    tokens = torch.tensor(rows(choose(logits, [SamplingParams(temperature=1.0)] * n, [None] * n, [0, 1]).numpy())[0])
    first = tokens[: n // 2]
    assert set(first.tolist()) <= {0, 1} and (tokens[n // 2 :] == 2).all()
    share = (first == 1).float().mean().item()
    assert abs(share - 0.75) < 0.05  # 2,000 draws: the standard error is 0.01


def test_a_seeded_row_repeats_its_draws_whatever_the_tick_holds() -> None:
    torch.manual_seed(2)
    logits = torch.randn(12, 200)
    seeded, other = SamplingParams(temperature=1.5, top_p=0.95, seed=5), SamplingParams(temperature=1.0)

    def draws(batch: int, global_seed: int) -> list[int]:
        """Row 0's tokens over 8 ticks, beside `batch - 1` unseeded rows drawing from the global generator."""
        torch.manual_seed(global_seed)
        gen, out = torch.Generator().manual_seed(5), []
        for _ in range(8):
            params, gens = [seeded] + [other] * (batch - 1), [gen] + [None] * (batch - 1)
            out.append(rows(choose(logits[:batch], params, gens, STATES).numpy())[0][0])
        return out

    alone = draws(1, 0)
    assert draws(12, 0) == alone and draws(12, 99) == alone
    assert len(set(alone)) > 1  # really sampled


def test_logits_in_the_models_dtype_choose_as_their_float32_copy() -> None:
    """The engine hands the sampler bf16 logits as the model made them; tokens and states are those of fp32."""
    torch.manual_seed(3)
    logits = torch.randn(16, 300).to(torch.bfloat16)
    params = [None] * 16
    half, full = choose(logits, params, [None] * 16, STATES), choose(logits.float(), params, [None] * 16, STATES)
    assert half.dtype == torch.float32 and torch.equal(half, full)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (a sync only exists there)")
def test_choosing_never_waits_for_the_device() -> None:
    """The engine decodes the last tick's text while this tick runs: choosing must not synchronize."""
    from duo.engine.staging import Staging

    logits = torch.randn(64, 1000, device="cuda")
    states = torch.tensor(STATES, device="cuda")
    params = [None, SamplingParams(temperature=0.8, top_p=0.9), SamplingParams(temperature=1.2)] * 21 + [None]
    staging = Staging(torch.device("cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = choose(logits, params, [None] * 64, states, staging.upload)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (64, 1 + len(STATES))

"""Next-token choice for every row of a tick, with ONE device-to-host transfer.

Rows are greedy (argmax) or sampled with temperature / top-p from the session's own seeded generator.
The softmax over the three state tokens is computed for every row alongside (cheap), so the forecast
path reads its probabilities from the same logits the token came from.
"""

from __future__ import annotations

import torch

from .config import SamplingParams


def choose(
    logits: torch.Tensor,
    params: list[SamplingParams | None],
    generators: list[torch.Generator | None],
    state_ids: list[int],
) -> tuple[list[int], list[list[float]]]:
    """Tokens `[N]` and state probabilities `[N, 3]` (in `state_ids` order) for logits `[N, vocab]`.

    A row with `None` params (a forecast) is greedy.
    """
    tokens = logits.argmax(dim=-1)
    for row, (p, gen) in enumerate(zip(params, generators, strict=True)):
        if p is not None and not p.greedy:
            tokens[row] = _sample(logits[row], p, gen)
    probs = logits[:, state_ids].softmax(dim=-1)
    packed = torch.cat([tokens[:, None].to(probs.dtype), probs], dim=1).tolist()
    return [int(r[0]) for r in packed], [r[1:] for r in packed]


def _sample(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator | None) -> torch.Tensor:
    probs = (logits / p.temperature).softmax(dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > p.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=gen)[0]

"""Next-token choice for every row of a tick, with ONE device-to-host transfer.

Rows are greedy (argmax) or sampled with temperature / top-p from the session's own seeded generator.
The softmax over the three state tokens is computed for every row alongside (cheap), so the forecast
path reads its probabilities from the same logits the token came from. `choose` stays on the device (no
synchronization); the engine copies its result to the host asynchronously and `rows` reads it there.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import SamplingParams


def choose(
    logits: torch.Tensor,
    params: list[SamplingParams | None],
    generators: list[torch.Generator | None],
    state_ids: list[int],
) -> torch.Tensor:
    """`[N, 1 + len(state_ids)]` float32 on the logits' device for logits `[N, vocab]`: each row's token, then
    its state probabilities (in `state_ids` order). A row with `None` params (a forecast) is greedy.
    """
    tokens = logits.argmax(dim=-1)
    for row, (p, gen) in enumerate(zip(params, generators, strict=True)):
        if p is not None and not p.greedy:
            tokens[row] = _sample(logits[row], p, gen)
    probs = logits[:, state_ids].softmax(dim=-1)
    return torch.cat([tokens[:, None].to(probs.dtype), probs], dim=1)


def rows(packed: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Tokens (as ints) and the state probabilities `[N, S]` of `choose`'s result, once on the host."""
    return packed[:, 0].astype(np.int64).tolist(), packed[:, 1:]


def _sample(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator | None) -> torch.Tensor:
    probs = (logits / p.temperature).softmax(dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > p.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=gen)[0]

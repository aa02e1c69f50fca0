"""Next-token choice for every row of a tick, with ONE device-to-host transfer.

Rows are greedy (argmax) or sampled with temperature / top-p. Sampled rows that share their parameters are
drawn together, a few kernels for the whole group: drawn row by row, a few hundred sessions cost thousands
of launches a tick, more than the forward. A session given a seed draws from its own generator instead,
row by row, so its replies repeat whatever else the tick holds. The softmax over the three state tokens is
computed for every row alongside (cheap), so the forecast path reads its probabilities from the same logits
the token came from. `choose` stays on the device (no synchronization); the engine copies its result to the
host asynchronously and `rows` reads it there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from .config import SamplingParams

Upload = Callable[[np.ndarray], torch.Tensor]  # a host index array on the logits' device, without waiting


def choose(
    logits: torch.Tensor,
    params: list[SamplingParams | None],
    generators: list[torch.Generator | None],
    state_ids: list[int] | torch.Tensor,
    upload: Upload | None = None,
) -> torch.Tensor:
    """`[N, 1 + len(state_ids)]` float32 on the logits' device for logits `[N, vocab]` (any float dtype: what
    is computed with is converted to float32): each row's token, then its state probabilities (in `state_ids`
    order). A row with `None` params (a forecast) is greedy; a row with a generator draws from it alone.

    Nothing here may wait for the device: the engine decodes the last tick's text while this tick runs. So
    `state_ids` should already be on the device, and `upload` (pinned, asynchronous: `Staging.upload`)
    carries the rows of each sampled group; a plain host index would be a blocking copy behind the forward.
    """
    tokens = logits.argmax(dim=-1)
    groups: dict[tuple[float, float], list[int]] = defaultdict(list)
    first: dict[tuple[float, float], SamplingParams] = {}  # each group's parameters, as a member gave them
    for row, (p, gen) in enumerate(zip(params, generators, strict=True)):
        if p is None or p.greedy:
            continue
        if gen is not None:
            tokens[row] = draw(filtered_probs(logits[row : row + 1], p), gen)[0]
        else:
            groups[p.temperature, p.top_p].append(row)
            first.setdefault((p.temperature, p.top_p), p)
    for key, members in groups.items():
        host = np.asarray(members, dtype=np.int64)
        index = upload(host) if upload is not None else torch.from_numpy(host).to(logits.device)
        tokens[index] = draw(filtered_probs(logits[index], first[key]))
    probs = logits[:, state_ids].float().softmax(dim=-1)
    return torch.cat([tokens[:, None].to(probs.dtype), probs], dim=1)


def filtered_probs(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Rows `[R, vocab]` of next-token probabilities at `p.temperature`, cut to the top-`p.top_p` nucleus
    (the smallest set of likeliest tokens whose mass reaches it; the others get 0, the rest is not renormalized:
    `multinomial` takes weights)."""
    probs = (logits.float() / p.temperature).softmax(dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > p.top_p
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs.masked_fill(outside, 0.0))
    return probs


def draw(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of `weights` `[R, vocab]`, each with probability proportional to its weight.

    The exponential race: the token whose weight over an Exp(1) draw is largest wins, which is a draw from
    the weights (as `multinomial`), in two kernels that never wait for the device.
    """
    race = torch.empty_like(weights).exponential_(generator=generator)
    race.clamp_(min=torch.finfo(race.dtype).tiny)  # a draw of exactly 0 would make a zero weight 0/0 = NaN
    return (weights / race).argmax(dim=-1)


def rows(packed: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Tokens (as ints) and the state probabilities `[N, S]` of `choose`'s result, once on the host."""
    return packed[:, 0].astype(np.int64).tolist(), packed[:, 1:]

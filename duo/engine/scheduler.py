"""Admission: what of the sessions' pending work runs in the next tick.

Two limits hold every tick. A token budget keeps one long input (a pasted document, long instructions)
from stalling every other session: decode rows (output tokens, forecast steps) always run, and long
prefills share what is left of the budget, spread over ticks in chunks. A KV check keeps the tick from
planning more cache than the pool can hold: a session whose work cannot get its blocks is refused (the
engine closes it with an error), and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .channels import Need
from .kv_cache import KVCache
from .plan import Chunk
from .sequence import Sequence
from .session import Session

MIN_PREFILL = 32  # prefill tokens a tick admits even when decode rows fill the budget: long inputs progress


@dataclass
class Admission:
    run: list[tuple[Session, Chunk, Need]] = field(default_factory=list)
    refused: list[Session] = field(default_factory=list)  # no KV for their work: to be closed with an error


def admit(work: list[tuple[Session, Sequence, Need]], *, budget: int, kv: KVCache, rows: int | None = None,
          width: int | None = None, fed: list[tuple[Session, Chunk, Need]] | None = None) -> Admission:
    """Chunks of `work` (items of one session in chain order) for one tick, after the `fed` chunks (the
    replies' next tokens, on the device: overlapped ticks), which always run like every decode row.

    When the budget is short, the shortest prefills go first (a spoken slice, a closed turn: what someone
    is waiting for) and the longest takes what is left, so a long input delays no one and still advances
    every tick. A sequence cut short this tick only writes KV (`Need.PREFILL`); the rest of its session's
    items wait for it, since they read its keys. With CUDA graphs, `rows` and `width` bound the tick's
    prefill rows and their tokens to the largest graph: longer prefills go in chunks, the extra rows wait.
    """
    fed = fed or []
    budget -= len(fed)
    pending = [seq.num_pending for _, seq, _ in work]
    prefills = [n for n in pending if n > 1]
    fits = (sum(pending) <= budget and (rows is None or len(prefills) <= rows)
            and (width is None or max(prefills, default=0) <= width))
    if fits:
        chosen = [(s, Chunk(seq, n), need) for (s, seq, need), n in zip(work, pending, strict=True)]
    else:
        by_session: dict[str, list[tuple[Session, Sequence, Need]]] = {}
        for item in work:
            by_session.setdefault(item[0].id, []).append(item)
        chosen, heads = [], []
        for items in by_session.values():
            for s, seq, need in items:
                if seq.num_pending > 1:
                    heads.append((s, seq, need))
                    break
                chosen.append((s, Chunk(seq, 1), need))
        left = max(budget - len(chosen), MIN_PREFILL)
        for s, seq, need in sorted(heads, key=lambda h: h[1].num_pending)[:rows]:
            if left <= 0:
                break
            n = min(seq.num_pending, left, width or left)
            chosen.append((s, Chunk(seq, n), need if n == seq.num_pending else Need.PREFILL))
            left -= n
    return _fit_kv(fed + chosen, kv)


def _fit_kv(chosen: list[tuple[Session, Chunk, Need]], kv: KVCache) -> Admission:
    available = kv.num_free + kv.max_blocks - kv.num_blocks
    # A chunk of n tokens adds at most n // block_size + 1 blocks: when the pool holds that for every chunk,
    # nobody is refused and the per-session count is moot (most ticks of a pool with room).
    if sum(c.n for _, c, _ in chosen) // kv.block_size + len(chosen) <= available:
        return Admission(run=chosen)
    need: dict[str, int] = {}
    for s, chunk, _ in chosen:
        need[s.id] = need.get(s.id, 0) + chunk.new_blocks
    refused: set[str] = set()
    for sid, blocks in need.items():
        if blocks > available:
            refused.add(sid)
        else:
            available -= blocks
    out = Admission(run=[item for item in chosen if item[0].id not in refused])
    out.refused = list({s.id: s for s, _, _ in chosen if s.id in refused}.values())
    return out

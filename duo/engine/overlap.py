"""Overlapped ticks: tick N+1 is planned and launched before tick N's tokens reach the host.

Run serially, a tick's host work (planning, then the bookkeeping of every chosen token) and its forward
take turns, so the device idles while the host works. Overlapped, the host plans the next tick as soon as
the current one is launched: each reply still running feeds its next token from the device (`Chunk.fed`,
the row of the in-flight tick's result), and only then does the host wait for that result and advance the
sessions, while the next forward runs.

The next tick is a guess about the one in flight: a reply may stop on the token it was fed, a forecast may
cut the reply, the owner may have cancelled, interrupted or truncated in between. `settle` makes every guess
exact after the fact: a sequence's cache keeps only the tokens that match what it now holds, and the rest is
prefilled again; `serves` drops a result whose row no longer stands for what its session wants. One CUDA
stream keeps the reuse of KV blocks safe: blocks freed on the host after a launch are only written by later
ticks, which run after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .channels import Need
from .plan import Chunk
from .staging import Download

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .session import Session


@dataclass
class Row:
    """One chunk of a launched tick: its session, what it wants, where it started and the tokens it ran."""

    session: Session
    chunk: Chunk
    need: Need
    start: int
    tokens: list[int]  # a fed chunk's one token is known only once the tick before it reaches the host


@dataclass
class Launched:
    """A tick whose forward is queued: its rows, its chosen tokens on the device, and their way to the host."""

    rows: list[Row]
    chosen: torch.Tensor  # [rows, 1 + states]: the tokens (column 0) the next tick may feed
    result: Download
    use: list[bool] = field(default_factory=list)  # per row: its token is applied (decided by `resolve`)

    @classmethod
    def of(cls, group: list[tuple[Session, Chunk, Need]], chosen: torch.Tensor, result: Download) -> Launched:
        """A tick just launched; its chunks' sequences already count the tokens as cached."""
        rows = []
        for session, chunk, need in group:
            seq = chunk.seq
            start = seq.num_cached - chunk.n
            tokens = [-1] if chunk.fed is not None else seq.tokens[start : start + chunk.n]
            rows.append(Row(session, chunk, need, start, tokens))
        return cls(rows, chosen, result)

    @property
    def group(self) -> list[tuple[Session, Chunk, Need]]:
        return [(row.session, row.chunk, row.need) for row in self.rows]

    def resolve(self, live: Mapping[str, Session]) -> list[tuple[Session, Chunk, Need]]:
        """Which rows' tokens still apply (`use`), and the fed chunks of the next tick: the next token of
        every reply whose row still applies. Called once the owners' commands of the next tick are in."""
        self.use = [_current(live, row) for row in self.rows]
        return [(row.session, Chunk(row.chunk.seq, 1, fed=i), Need.OUTPUT)
                for i, (row, use) in enumerate(zip(self.rows, self.use, strict=True))
                if use and row.need is Need.OUTPUT]

    def fed_by(self, before: list[int]) -> None:
        """The tick before this one reached the host: its tokens are the fed chunks' own."""
        for row in self.rows:
            if row.chunk.fed is not None:
                row.tokens = [before[row.chunk.fed]]

    def settle(self, live: Mapping[str, Session]) -> None:
        """Each sequence keeps cached only the tokens that match what it holds now; the others run again."""
        for row in self.rows:
            seq = row.chunk.seq
            if live.get(row.session.id) is not row.session or not seq.refs:
                continue
            held, m = seq.tokens[row.start : row.start + len(row.tokens)], 0
            while m < len(held) and held[m] == row.tokens[m]:
                m += 1
            seq.num_cached = min(seq.num_cached, row.start + m)


def serves(session: Session, row: Row) -> bool:
    """The row's sequence is still the one its session wants this kind of token for."""
    seq = row.chunk.seq
    if row.need is Need.OUTPUT:
        return session.reply is not None and session.reply.seq is seq
    if row.need is Need.FORECAST:
        return session.input is not None and session.input.seq is seq and session.input.judging
    return False


def _current(live: Mapping[str, Session], row: Row) -> bool:
    """The row's token applies: same session, same want, and its sequence unchanged since the launch."""
    seq, end = row.chunk.seq, row.start + row.chunk.n
    return (live.get(row.session.id) is row.session and serves(row.session, row)
            and seq.num_cached == end == len(seq.tokens))

"""What one session holds: its conversation's sequences, its channels, the ended replies, its queued input.

The session is layered, each layer adding the transitions it owns: this state (and the reads over it), the
output channel (`replies.py`), the input channel's turn taking (`turn_taking.py`) and the public face the
owner and the engine call (`session.py`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from . import events as ev
from .channels import InputChannel, Reply, Revocable, Vocab
from .config import SessionConfig
from .framing import ChatFraming
from .kv_cache import KVCache
from .sequence import Sequence

__all__ = ["CLOSED_KEPT", "SLICE_RESERVE", "SessionState"]

SLICE_RESERVE = 128  # tokens kept free for the user's next utterance when trimming the context
CLOSED_KEPT = 32  # ended replies that can still be truncated


class SessionState:
    """The fields every layer of a session reads and rewrites, and the reads they share."""

    def __init__(self, sid: str, config: SessionConfig, framing: ChatFraming, vocab: Vocab, kv: KVCache,
                 history: list[dict[str, str]] | None = None, max_slice_tokens: int | None = None) -> None:
        self.id = sid
        self.config = config
        self.max_slice_tokens = max_slice_tokens
        self.framing = framing
        self.vocab = vocab
        self.kv = kv
        self.turns: list[dict[str, str]] = list(history or [])
        self.headroom = config.sampling.max_new_tokens + SLICE_RESERVE + config.forecast_tokens
        if len(framing.system) + self.headroom > vocab.max_context:
            raise ValueError("instructions plus max_new_tokens do not fit the model's context window")
        self.last = Sequence(kv, framing.history(self.turns))  # the conversation's newest sequence
        self.reply: Reply | None = None
        self.closed: deque[Reply] = deque(maxlen=CLOSED_KEPT)  # ended replies, newest last
        self.stale: list[Sequence] = []  # earlier turns re-closed by a truncate, prefilled in the next tick
        self.input: InputChannel | None = None
        self.revocable: Revocable | None = None  # the newest promotion, while it can still be taken back
        self.inbox: deque[tuple[str, Any]] = deque()
        self.generator: torch.Generator | None = None  # a seeded session's own draws (`sampler.py`)
        if not config.sampling.greedy and config.sampling.seed is not None:
            self.generator = torch.Generator(device=kv.k[0].device)
            self.generator.manual_seed(config.sampling.seed)

    def _live(self) -> list[Sequence]:
        return [self.last] + ([self.input.seq] if self.input else [])

    def _chain(self) -> list[Sequence]:
        """Every sequence of the conversation, root first, the input channel last."""
        return [seq for seq, _ in self.last.ancestry()] + self._live()

    def _text(self, tokens: list[int]) -> str:
        return self.vocab.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def _error(self, code: str, message: str) -> list[ev.Event]:
        return [ev.Error(self.id, code, message)]


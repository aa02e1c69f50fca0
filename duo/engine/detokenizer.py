"""Incremental, UTF-8-safe detokenization of a growing token list.

Decoding token by token breaks multi-byte characters and word-initial spaces; re-decoding the whole
reply every token is quadratic. This keeps a short window (the usual prefix/read offsets): it decodes
the window with and without the new tokens and emits the difference, holding it back while it ends in
an incomplete UTF-8 sequence (U+FFFD).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """`tokenizer.decode(ids, skip_special_tokens=True)`, straight from the Rust backend when that is all the
    call does (a stock fast tokenizer, no space clean-up): every reply decodes twice a token, and transformers'
    own checks cost several times the decode itself."""
    backend = getattr(tokenizer, "_tokenizer", None)
    cls = type(tokenizer)
    stock = (getattr(getattr(cls, "decode", None), "__module__", "") == "transformers.tokenization_utils_base"
             and getattr(getattr(cls, "_decode", None), "__module__", "") in FAST_MODULES)
    if backend is not None and stock and not getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return lambda ids: backend.decode(ids, skip_special_tokens=True)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


FAST_MODULES = ("transformers.tokenization_utils_tokenizers", "transformers.tokenization_utils_fast")


class IncrementalDetokenizer:
    """Tokens in, text out. `add` only queues a token and `drain` decodes the queue: the engine queues a tick's
    tokens and decodes them while the next tick's forward runs on the device."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._decode = decoder(tokenizer)
        self.ids: list[int] = []
        self.queued: list[int] = []  # added, not yet decoded
        self._prefix = 0
        self._read = 0
        self.text = ""

    @property
    def num_tokens(self) -> int:
        return len(self.ids) + len(self.queued)

    def add(self, token: int) -> None:
        self.queued.append(token)

    def drain(self) -> str:
        """The text the queued tokens complete."""
        queued, self.queued = self.queued, []
        return "".join([self.push(token) for token in queued])

    def push(self, token: int) -> str:
        """Add a token; return the text it completes (possibly empty)."""
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        delta = after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        self.text += delta
        return delta

    def flush(self) -> str:
        """At the end of a reply: the queued tokens' text and whatever is still held back."""
        head = self.drain()
        rest = self._decode(self.ids)[len(self.text) :]
        self.text += rest
        return head + rest

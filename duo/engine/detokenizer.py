"""Incremental, UTF-8-safe detokenization of a growing token list.

Decoding token by token breaks multi-byte characters and word-initial spaces; re-decoding the whole
reply every token is quadratic. This keeps a short window (the usual prefix/read offsets): it decodes
the window with and without the new tokens and emits the difference, holding it back while it ends in
an incomplete UTF-8 sequence (U+FFFD).
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

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
        """At the end of a reply: whatever is still held back."""
        rest = self._decode(self.ids)[len(self.text) :]
        self.text += rest
        return rest

"""A channel's tokens: its own tokens and KV blocks, continuing a visible prefix of a parent sequence.

The conversation of a session is a chain of sequences (instructions, then one per turn). An input channel
forks by pointing at the output channel with the length it had at the fork: nothing is copied, and the
output may keep growing beyond that point without the input seeing it (paper Figure 1, right). Parents
are reference counted, so a sequence's blocks go back to the pool when nothing continues it.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from .kv_cache import KVCache

_ids = itertools.count()


class Sequence:
    def __init__(self, kv: KVCache, tokens: list[int], parent: Sequence | None = None,
                 parent_len: int | None = None) -> None:
        self.id = next(_ids)
        self.kv = kv
        self.parent = parent
        self.parent_len = 0 if parent is None else (len(parent) if parent_len is None else parent_len)
        # sequences continuing a prefix of this one (their caches follow it); weak: no cycle keeps a pool alive
        self.children: weakref.WeakSet[Sequence] = weakref.WeakSet()
        if parent is not None:
            assert self.parent_len <= len(parent)
            parent.refs += 1
            parent.children.add(self)
        self.base = 0 if parent is None else parent.base + self.parent_len
        self.tokens = list(tokens)
        self.num_cached = 0
        self.blocks: list[int] = []
        self.refs = 1  # the creator's reference
        self._slot_array: np.ndarray | None = None  # slots of all own blocks, rebuilt when they change
        # Slots of the visible ancestry then of every own block: a tick's slot table row is a prefix of it.
        # It grows by a block as the sequence does; dropped when its blocks or any ancestor's view change.
        self._visible: np.ndarray | None = None
        self.version = 0  # bumped when the slots of keys it already saw change (a device table row is stale)

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Sequence(id={self.id}, base={self.base}, len={len(self)}, cached={self.num_cached})"

    @property
    def total_len(self) -> int:
        """Tokens this sequence sees: its visible ancestry plus its own."""
        return self.base + len(self.tokens)

    @property
    def pending(self) -> list[int]:
        return self.tokens[self.num_cached :]

    @property
    def num_pending(self) -> int:
        return len(self.tokens) - self.num_cached

    def ancestry(self) -> list[tuple[Sequence, int]]:
        """(ancestor, visible length) pairs, root first."""
        chain: list[tuple[Sequence, int]] = []
        seq = self
        while seq.parent is not None:
            chain.append((seq.parent, seq.parent_len))
            seq = seq.parent
        return chain[::-1]

    def append(self, tokens: list[int]) -> None:
        self.tokens.extend(tokens)

    def slots(self, start: int, stop: int) -> np.ndarray:
        """Pool slots of own tokens [start, stop), allocating blocks as needed."""
        bs = self.kv.block_size
        while len(self.blocks) * bs < stop:
            self.blocks.append(self.kv.allocate())
            self._slot_array = None
            if self._visible is not None:  # a new block: its slots follow the ones already listed
                self._visible = np.concatenate([self._visible, self.blocks[-1] * bs + np.arange(bs)])
        if self._slot_array is None:
            self._slot_array = (np.asarray(self.blocks, dtype=np.int64)[:, None] * bs + np.arange(bs)).ravel()
        return self._slot_array[start:stop]

    def key_slots(self, own: int | None = None) -> list[np.ndarray]:
        """The slots of every key this sequence sees, in position order: visible ancestry, then its first
        `own` tokens (all of them by default)."""
        own = len(self.tokens) if own is None else own
        return [anc.slots(0, n) for anc, n in self.ancestry()] + [self.slots(0, own)]

    def visible_slots(self, own: int) -> np.ndarray:
        """`np.concatenate(self.key_slots(own))`, from a cache that a decode step extends instead of rebuilding."""
        visible = self._visible
        if visible is not None and len(visible) >= self.base + own:  # a decode step inside its last block
            return visible[: self.base + own]
        if visible is None:
            self._visible = np.concatenate(self.key_slots(len(self.blocks) * self.kv.block_size))
        self.slots(0, own)  # allocates the blocks `own` needs (and lists them)
        return self._visible[: self.base + own]

    def _changed(self) -> None:
        """Own blocks or the visible ancestry changed: this cache and every descendant's are stale."""
        self._visible = None
        self.version += 1
        for child in list(self.children):
            child._changed()

    def truncate(self, n: int) -> None:
        """Keep the first n own tokens; their KV is untouched, so the cache equals a prefill of them."""
        if n >= len(self.tokens):
            return
        del self.tokens[n:]
        self.num_cached = min(self.num_cached, n)
        keep = -(-n // self.kv.block_size)
        self.kv.free(self.blocks[keep:])
        if keep < len(self.blocks):
            del self.blocks[keep:]
            self._slot_array = None
            self._changed()

    def reattach(self, parent_len: int | None = None) -> None:
        """An ancestor was cut below what this sequence saw: continue `parent_len` tokens of the parent now
        (unchanged if None) and prefill every own token again, since their keys were computed over the old
        prefix at the old positions. The blocks are kept and overwritten."""
        assert self.parent is not None
        if parent_len is not None:
            assert parent_len <= len(self.parent)
            self.parent_len = parent_len
        self.base = self.parent.base + self.parent_len
        self.num_cached = 0
        self._changed()

    def release(self) -> None:
        """Drop a reference; the last one returns the blocks and releases the parent."""
        self.refs -= 1
        if self.refs == 0:
            self.kv.free(self.blocks)
            self.blocks = []
            self._slot_array = None
            self._changed()
            if self.parent is not None:
                self.parent.children.discard(self)
                self.parent.release()
                self.parent = None

"""Paged KV storage shared by every session's channels.

Keys and values of all layers live in one pool per layer, `[slots, kv_heads, head_dim]`, handed out in
fixed-size blocks. A block belongs to exactly one `Sequence`; sharing happens one level up, where a
sequence continues a visible prefix of its parent (see `sequence.py`), so forking a channel copies nothing
and discarding one returns only its own blocks. Block 0 is never handed out: its first slot is the scratch
slot that a tick's padding writes to and reads from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class KVCache:
    def __init__(
        self,
        *,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        block_size: int,
        num_blocks: int,
        max_blocks: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.num_blocks = self.initial_blocks = num_blocks
        shape = (num_blocks * block_size, num_kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self._free = list(range(num_blocks - 1, 0, -1))
        self.version = 0  # bumped when the pool tensors are reallocated (captured graphs hold their addresses)

    @classmethod
    def for_model(cls, model: torch.nn.Module, *, block_size: int, num_blocks: int | None, max_blocks: int,
                  memory_fraction: float = 0.4, shards: int = 1, fixed: bool = False,
                  common: Callable[[int], int] | None = None) -> KVCache:
        """A pool for `model`; `num_blocks=None` sizes it from free device memory (CUDA) or 256 blocks.

        `fixed`: the pool never grows past its first size (CUDA: growing moves the tensors captured graphs
        read; admission refuses what does not fit instead). Tensor parallel: each of `shards` ranks holds its
        share of the kv heads, and `common` turns this rank's block count into one every rank holds (rank 0
        hands out slots that every rank's pool must have).
        """
        config = model.config.get_text_config()
        heads = config.num_attention_heads
        param = next(model.parameters())
        kv_heads = (getattr(config, "num_key_value_heads", None) or heads) // shards
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if num_blocks is None:
            num_blocks = 256
            if param.device.type == "cuda":
                per_block = 2 * config.num_hidden_layers * kv_heads * head_dim * param.element_size() * block_size
                free, _ = torch.cuda.mem_get_info(param.device)
                num_blocks = max(256, min(max_blocks, int(memory_fraction * free) // per_block))
        if common is not None:
            num_blocks = common(num_blocks)
        return cls(
            num_layers=config.num_hidden_layers,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            block_size=block_size,
            num_blocks=num_blocks,
            max_blocks=num_blocks if fixed else max(max_blocks, num_blocks),
            dtype=param.dtype,
            device=param.device,
        )

    SCRATCH = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def bytes_per_token(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in (*self.k, *self.v))

    def allocate(self) -> int:
        if not self._free:
            self._grow()
        return self._free.pop()

    def free(self, blocks: list[int]) -> None:
        self._free.extend(reversed(blocks))

    def resize_to(self, num_blocks: int) -> None:
        """Grow or shrink as another pool did (tensor parallel: every rank's pool follows rank 0's)."""
        while self.num_blocks < num_blocks:
            self._grow()
        while self.num_blocks > num_blocks and self.shrink():
            pass

    def shrink(self) -> bool:
        """Halve the pool (never below its first size) when its upper half is all free: the memory a crowd of
        sessions needed goes back once the crowd has left. A copy of the lower half; True if it shrank."""
        half = max(self.initial_blocks, self.num_blocks // 2)
        top = self.num_blocks - half
        if top <= 0 or len(self._free) < top or sum(b >= half for b in self._free) < top:
            return False
        self._free = [b for b in self._free if b < half]
        keep = half * self.block_size
        for pool in (self.k, self.v):
            for i, t in enumerate(pool):
                pool[i] = t[:keep].clone()
        self.num_blocks = half
        self.version += 1
        return True

    def _grow(self) -> None:
        """Double the pool (a copy, rare: sizing `initial_blocks` right avoids it on a GPU)."""
        extra = min(self.num_blocks, self.max_blocks - self.num_blocks)
        if extra <= 0:
            raise MemoryError(f"KV cache is full ({self.num_blocks} blocks of {self.block_size} tokens)")
        pad = extra * self.block_size
        for pool in (self.k, self.v):
            for i, t in enumerate(pool):
                pool[i] = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))])
        self._free = list(range(self.num_blocks + extra - 1, self.num_blocks - 1, -1)) + self._free
        self.num_blocks += extra
        self.version += 1

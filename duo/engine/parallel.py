"""Tensor parallelism: one engine process per device under `torchrun`, the model split by its own TP plan.

Rank 0 owns the sessions: it schedules each tick, plans it and samples. Before each forward it sends the
tick's `Step` (a few ints) and then broadcasts the plan's flat payload; every other rank runs the same
packed forward on its shard (`ModelRunner.execute`, as a CUDA graph where rank 0 replays one) and drops the
logits. The others talk to no client; they only follow (`follower.py`).

Weights are split at load by transformers' tensor-parallel plan for the model (`base_model_tp_plan`: q, k,
v and the MLP's gate and up projections by columns, o_proj and down_proj by rows with an all-reduce, the LM
head gathered), through `from_pretrained(distributed_config=...)`, so each rank reads only its shard of the
checkpoint. Under inference mode those layers run on plain local tensors, so the engine's attention
function (`attention.py`) sees this rank's heads as an ordinary model's, and each rank's KV pool holds its
share of the kv heads. Every rank's pool has the same number of blocks: rank 0 hands out slots for all.

Headers go over a CPU (gloo) group with a long timeout, because a server waits idle between ticks for as
long as no one talks to it; payloads and the model's own collectives use the default group (NCCL on GPUs,
gloo on the CPU).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from .plan import Step

if TYPE_CHECKING:
    from .config import EngineConfig

log = logging.getLogger(__name__)

STOP, STEP, ENGINE = 0, 1, 2  # what a header announces
IDLE = timedelta(days=365)  # how long the other ranks may wait for rank 0's next tick

_joined: TensorParallel | None = None


@dataclass
class TensorParallel:
    """This process's place in the group: its rank, its device, and the channel rank 0 leads through."""

    size: int
    rank: int
    device: torch.device
    control: Any  # the gloo process group headers travel on

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, size: int) -> TensorParallel:
        """Join the group `torchrun` started this process in (once per process; later calls return it)."""
        global _joined
        if _joined is not None:
            if _joined.size != size:
                raise RuntimeError(f"already in a tensor-parallel group of {_joined.size}, not {size}")
            return _joined
        world = int(os.environ.get("WORLD_SIZE", "0"))
        if world != size:
            raise RuntimeError(f"--tensor-parallel {size} runs as {size} processes under torchrun "
                               f"(torchrun --nproc-per-node {size} ...); WORLD_SIZE is {world or 'unset'}")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device, backend = torch.device("cuda", local), "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        _joined = cls(size, dist.get_rank(), device, dist.new_group(backend="gloo", timeout=IDLE))
        if _joined.leader:
            atexit.register(_joined.close)
        log.info("event=tensor_parallel_joined rank=%d size=%d device=%s backend=%s", _joined.rank, size,
                 device, backend)
        return _joined

    # loading

    def check(self, config: Any) -> None:
        """Refuse a model whose heads do not split evenly over the ranks (a head never straddles two)."""
        config = config.get_text_config()
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        if heads % self.size or kv_heads % self.size:
            raise ValueError(f"{heads} attention heads and {kv_heads} kv heads do not split over "
                             f"{self.size} ranks: choose a tensor-parallel size that divides both")

    def load_kwargs(self) -> dict[str, Any]:
        """What `from_pretrained` needs to load this rank's shard by the model's own tensor-parallel plan."""
        from transformers import DistributedConfig

        return {"distributed_config": DistributedConfig(tp_size=self.size, tp_plan="auto")}

    def load(self, path: str, dtype: torch.dtype) -> Any:
        """This rank's shard of the checkpoint at `path`, on this rank's device."""
        from transformers import AutoConfig, AutoModelForCausalLM

        self.check(AutoConfig.from_pretrained(path))
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **self.load_kwargs())

    def check_ready(self, model: Any, vocab: int, adapter: object) -> None:
        """What the loader does to a whole model cannot be done to a shard: say what to do instead."""
        if adapter not in (None, "none"):
            raise ValueError("a tensor-parallel backbone merges no adapter at load: serve a checkpoint with the "
                             "adapter merged in (docs/deploy.md)")
        rows = model.get_input_embeddings().num_embeddings
        if vocab > rows:
            raise ValueError(f"the checkpoint's embeddings have {rows} rows but its tokenizer with DUO's tokens "
                             f"has {vocab}: save the model with DUO's tokens added (docs/deploy.md)")

    # the channel

    def common_blocks(self, num_blocks: int) -> int:
        """The largest KV pool every rank holds (ranks differ a little in free memory)."""
        t = torch.tensor([num_blocks], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.control)
        return int(t.item())

    def _header(self, kind: int, step: Step | None = None) -> None:
        body = step.header() if step is not None else [0] * Step.HEADER
        dist.broadcast(torch.tensor([kind, *body], dtype=torch.int64), src=0, group=self.control)

    def send(self, step: Step) -> None:
        """Rank 0: the next step; its payload follows through `broadcast`."""
        self._header(STEP, step)

    def broadcast(self, buffer: torch.Tensor) -> None:
        """A step's payload, from rank 0 into every rank's `buffer` (on the device)."""
        dist.broadcast(buffer, src=0)

    def receive(self) -> tuple[int, list[int], Any]:
        """Ranks > 0: rank 0's next header: what it announces (STOP, STEP, ENGINE), the step's ints, and for
        ENGINE the new engine's settings."""
        header = torch.empty(1 + Step.HEADER, dtype=torch.int64)
        try:
            dist.broadcast(header, src=0, group=self.control)
        except RuntimeError:
            log.error("event=tensor_parallel_leader_lost rank=%d", self.rank)
            raise
        kind, body, config = int(header[0]), header[1:].tolist(), None
        if kind == ENGINE:
            box: list[Any] = [None]
            dist.broadcast_object_list(box, src=0, group=self.control)
            config = box[0]
        return kind, body, config

    def open_engine(self, config: EngineConfig) -> None:
        """Rank 0: a new engine starts; the other ranks build theirs with the same settings (pool, graphs)."""
        self._header(ENGINE)
        dist.broadcast_object_list([config], src=0, group=self.control)

    def close(self) -> None:
        """Rank 0: the other ranks stop following (at exit too); then leave the group."""
        global _joined
        if _joined is not self:
            return
        _joined = None
        try:
            if self.leader:
                self._header(STOP)
            dist.destroy_process_group()
        except Exception:  # the others are gone already (torchrun tearing the group down)
            log.warning("event=tensor_parallel_close_failed rank=%d", self.rank, exc_info=True)


def torchrun_argv(size: int, module: str = "duo.cli", argv: list[str] | None = None) -> list[str]:
    """This command again, as `size` processes under torchrun on this host (`python -m MODULE ...`)."""
    args = sys.argv[1:] if argv is None else argv
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={size}",
            "-m", module, *args]


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ

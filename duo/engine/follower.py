"""The ranks > 0 of a tensor-parallel group: no sessions, no clients; each forward rank 0 runs, on their shard.

Rank 0's engine announces itself (`TensorParallel.open_engine`) and then every step; a follower builds the
same engine (pool, graphs) from the settings it receives and runs each step's packed forward with the payload
rank 0 broadcasts, dropping the logits (rank 0 samples).
"""

from __future__ import annotations

import gc
import logging

import torch

from .llm_engine import Engine
from .loader import Backbone
from .parallel import ENGINE, STOP, TensorParallel
from .plan import Step

log = logging.getLogger(__name__)


def follow(group: TensorParallel, backbone: Backbone) -> Engine | None:
    """Build each engine rank 0 builds and run each step it sends, until it says stop.

    Returns the last engine built (its pool is what this rank held).
    """
    engine = None
    while True:
        kind, body, config = group.receive()
        if kind == STOP:
            log.info("event=tensor_parallel_stop rank=%d", group.rank)
            return engine
        if kind == ENGINE:
            engine = None  # free the last engine's pool before the new one is sized
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            engine = Engine(backbone, config)
            continue
        if engine is None:
            raise RuntimeError("rank 0 sent a step before any engine")
        step = Step.from_header(body)
        try:
            engine.runner.execute(step, group.broadcast)
        except Exception:  # rank 0 meets the same failure, closes the sessions of the tick and goes on
            log.exception("event=follower_step_failed rank=%d graph=%s shape=%s", group.rank, step.graph,
                          step.shape)

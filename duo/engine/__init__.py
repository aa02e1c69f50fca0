"""duo.engine: DUO duplex decoding. Sessions, paged KV, one packed forward per tick; no I/O.

The public face, what the server and the tools build on:
- `load_backbone` / `Backbone`: any causal LM (or the embedded default) made ready for DUO;
- `TensorParallel` / `follow`: one process per GPU under torchrun, the model split over them, rank 0
  leading and the other ranks following;
- `Engine`: the sessions and the tick (schedule, one forward, postprocess), driven step by step;
- `EngineLoop` / `SessionHandle`: the engine driven from asyncio, a session's input in and events out;
- the settings (`EngineConfig`, `SessionConfig`, `SamplingParams`, `Thresholds`, `Mode`, `State`) and the
  events a session produces (`events`).
"""

from . import events
from .config import EngineConfig, Mode, SamplingParams, SessionConfig, SpecialTokens, State, Thresholds
from .follower import follow
from .framing import DEFAULT_INSTRUCTIONS
from .llm_engine import Engine, TickStats
from .loader import DEFAULT_MODEL, Backbone, default_model, load_backbone
from .loop import EngineLoop, SessionHandle
from .parallel import TensorParallel, torchrun_argv, under_torchrun

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MODEL",
    "Backbone",
    "Engine",
    "EngineConfig",
    "EngineLoop",
    "Mode",
    "SamplingParams",
    "SessionConfig",
    "SessionHandle",
    "SpecialTokens",
    "State",
    "TensorParallel",
    "Thresholds",
    "TickStats",
    "default_model",
    "events",
    "follow",
    "load_backbone",
    "torchrun_argv",
    "under_torchrun",
]

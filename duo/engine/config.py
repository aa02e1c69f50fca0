"""Engine settings: what DUO decoding is configured by (design §2.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """The three input states the model forecasts after `<|prediction|>` (paper §2.2)."""

    PROCESS = "process"
    IGNORE = "ignore"
    INCOMPLETE = "incomplete"


class Mode(StrEnum):
    """DUO packs both channels in one forward; TDM is the time-division baseline (design §2.7)."""

    DUO = "duo"
    TDM = "tdm"


@dataclass(frozen=True)
class SpecialTokens:
    """Strings of the four tokens DUO adds to the vocabulary."""

    prediction: str = "<|prediction|>"
    process: str = "<|process|>"
    ignore: str = "<|ignore|>"
    incomplete: str = "<|incomplete|>"

    def all(self) -> list[str]:
        return [self.prediction, self.process, self.ignore, self.incomplete]

    def state_strings(self) -> dict[State, str]:
        return {State.PROCESS: self.process, State.IGNORE: self.ignore, State.INCOMPLETE: self.incomplete}


@dataclass(frozen=True)
class Thresholds:
    """Probability (softmax over the three state tokens) a state needs to be acted on.

    `process` is checked first, then `ignore`; anything below both is `incomplete`, the safe choice: wait
    for more input rather than answer or drop it on a weak signal.
    """

    process: float = 0.5
    ignore: float = 0.5

    def decide(self, probs: dict[State, float]) -> State:
        if probs[State.PROCESS] >= self.process:
            return State.PROCESS
        if probs[State.IGNORE] >= self.ignore:
            return State.IGNORE
        return State.INCOMPLETE


@dataclass(frozen=True)
class SamplingParams:
    """Greedy when temperature is 0; otherwise temperature / top-p. With a `seed` the session draws from its own
    generator, so its replies repeat; without one it draws with the rest of the tick."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_new_tokens: int = 256
    # Run to max_new_tokens whatever the model says (benchmarks: a fixed load of streaming replies).
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(f"invalid sampling parameters: {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class SessionConfig:
    """Per-session DUO behaviour."""

    instructions: str | None = None
    forecast_tokens: int = 4
    thresholds: Thresholds = field(default_factory=Thresholds)
    # A `process` forecast on a slice cut by the length limit (the user is still speaking) waits for a
    # pause before the reply starts, as in the paper's case study (process + silence). False acts at once.
    process_waits_for_pause: bool = True
    # While it waits, start the reply at once when no reply is running (a speculative reply): the owner keeps
    # it unheard until the pause and takes it back (`Session.withdraw`) if the user goes on.
    speculate: bool = False
    sampling: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if self.forecast_tokens < 1:
            raise ValueError("forecast_tokens must be at least 1")


@dataclass(frozen=True)
class EngineConfig:
    mode: Mode = Mode.DUO
    block_size: int = 16
    # KV blocks reserved at start; on a CPU the pool doubles when it runs out, up to max_blocks. On CUDA it
    # never grows (growing would move the tensors captured graphs read; admission refuses what does not fit),
    # and None reserves `kv_memory_fraction` of the memory free after loading the model.
    initial_blocks: int | None = None
    kv_memory_fraction: float = 0.4
    max_blocks: int = 1 << 16
    # Sessions open at once; on CUDA the graphs cover the ticks this many can plan (two rows each).
    max_sessions: int = 256
    # Context window; None takes the model's `max_position_embeddings`.
    max_context: int | None = None
    # On CUDA, replay captured graphs for bucketed tick shapes (engine/cuda_graphs.py).
    cuda_graphs: bool = True
    # Decode rows read the paged KV pool in place (a Triton kernel, CUDA only); False gathers each row's
    # keys into a copy and runs masked SDPA: the reference path, kept for comparison.
    paged_attention: bool = True
    # Each decoder layer's q/k/v and gate/up as one matrix multiply each, its norms, rotary embedding and
    # SiLU x up one kernel each (`fused.py`, Triton); None: on CUDA. The model is changed in place.
    fused_layers: bool | None = None
    # Plan and launch each tick before the previous one's tokens reach the host, the replies' next tokens fed
    # on the device, so the GPU never waits for the host's bookkeeping (`overlap.py`); None: on CUDA, DUO mode.
    overlap_ticks: bool | None = None
    # Tokens one tick runs at most: long prefills beyond it are spread over ticks, decode rows always run.
    # None: 2048 on CUDA; 32 on a CPU, where a tick's time grows with every token (~6 ms a token for the
    # embedded 135M model on 2 cores, against ~80 ms for a decode tick), so a long input at most triples it.
    max_tick_tokens: int | None = None
    # The longest slice of user input accepted, in tokens (a longer one is refused with an error).
    max_slice_tokens: int = 4096

    def __post_init__(self) -> None:
        if (self.max_tick_tokens is not None and self.max_tick_tokens < 1) or self.max_slice_tokens < 1:
            raise ValueError("max_tick_tokens and max_slice_tokens must be at least 1")

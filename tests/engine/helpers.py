"""Helpers for the engine tests: drive sessions tick by tick and force states through the real path."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from duo.engine import events as ev
from duo.engine.config import State, Thresholds
from duo.engine.llm_engine import Engine
from duo.engine.sequence import Sequence


@dataclass(frozen=True)
class Scripted(Thresholds):
    """Decides the next scripted state instead of reading thresholds, through the same transition code.

    The untrained backbone cannot forecast states yet; everything after the decision is the real path.
    """

    script: list[State] = field(default_factory=list)

    def decide(self, probs: dict[State, float]) -> State:
        return self.script.pop(0) if self.script else super().decide(probs)


def scripted(*states: State) -> Scripted:
    return Scripted(script=list(states))


def run_until_idle(engine: Engine, max_ticks: int = 500) -> list[ev.Event]:
    out: list[ev.Event] = []
    for _ in range(max_ticks):
        if not engine.has_work():
            return out
        out += engine.step()
    raise AssertionError("engine still busy")


def full_tokens(seq: Sequence) -> list[int]:
    """What a sequence sees: its visible ancestry, then its own tokens."""
    tokens: list[int] = []
    for anc, n in seq.ancestry():
        tokens += anc.tokens[:n]
    return tokens + seq.tokens


def reference_logits(model: torch.nn.Module, tokens: list[int]) -> torch.Tensor:
    """Logits of a plain forward over one channel alone (no engine tick: stock SDPA attention)."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0].float()


def greedy_reference(model: torch.nn.Module, tokens: list[int], n: int, stop: frozenset[int]) -> list[int]:
    """Greedy continuation with transformers' own generate()."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([tokens]), max_new_tokens=n, do_sample=False,
                             eos_token_id=sorted(stop), pad_token_id=sorted(stop)[0])
    ids = out[0, len(tokens):].tolist()
    return [t for t in ids if t not in stop]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())

"""Helpers for the engine tests: drive sessions tick by tick and force states through the real path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from duo.engine import events as ev
from duo.engine.config import SpecialTokens, State, Thresholds
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


def assert_fresh_cache(model: torch.nn.Module, engine: Engine, seq: Sequence) -> None:
    """Every cached key and value `seq` sees equals a plain prefill of the tokens it sees."""
    tokens = full_tokens(seq)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([tokens]), use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    parts = [*seq.ancestry(), (seq, seq.num_cached)]
    assert parts[-1][1] >= len(seq) - 1  # at most the newest token waits for the next tick
    for layer in range(len(engine.kv.k)):
        fresh = cache.layers[layer]
        for pool, ref in ((engine.kv.k[layer], fresh.keys), (engine.kv.v[layer], fresh.values)):
            for part, n in parts:
                ours = pool[list(part.slots(0, n))].transpose(0, 1)
                assert torch.allclose(ours, ref[0, :, part.base : part.base + n], rtol=1e-4, atol=1e-5)


def greedy_reference(model: torch.nn.Module, tokens: list[int], n: int, stop: frozenset[int]) -> list[int]:
    """Greedy continuation with transformers' own generate()."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([tokens]), max_new_tokens=n, do_sample=False,
                             eos_token_id=sorted(stop), pad_token_id=sorted(stop)[0])
    ids = out[0, len(tokens):].tolist()
    return [t for t in ids if t not in stop]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def tiny_qwen2(path: Path, tokenizer_path: Path, seed: int = 0, spread: bool = False) -> Path:
    """A 2-layer random Qwen2 (4 heads, 2 kv heads, q/k/v biases) with the embedded tokenizer and DUO's tokens,
    saved at `path`. `spread`: biases and norm weights drawn away from their 0 / 1 starts."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    tokenizer.add_tokens(SpecialTokens().all(), special_tokens=True)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    if spread:
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.data.normal_(1.0 if "norm" in name else 0.0, 0.2)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

"""The models benched: the embedded default as shipped, or a larger architecture with random bf16 weights.

Speed does not depend on weight values, so `qwen2.5-1.5b`, `qwen2.5-7b` and `qwen2.5-72b` are those shapes
randomly initialized, with the embedded tokenizer (no 1 GB model file to fetch to bench the 1.5B's speed);
under `--tensor-parallel` each rank builds only its shard.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from duo.engine.attention import ATTN_IMPLEMENTATION, register_attention
from duo.engine.loader import Backbone, load_backbone
from duo.engine.parallel import TensorParallel

QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu")
QWEN25_72B = dict(QWEN25_7B, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                  num_attention_heads=64, num_key_value_heads=8)
QWEN25_1_5B = dict(QWEN25_7B, hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                   num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)  # Qwen2.5(-Coder)-1.5B
ARCHS = {"qwen2.5-1.5b": QWEN25_1_5B, "qwen2.5-7b": QWEN25_7B, "qwen2.5-72b": QWEN25_72B}


def load(arch: str, device: str, group: TensorParallel | None = None, model: str | None = None) -> Backbone:
    """`model` (default: the embedded default) is benched as is, or lends its tokenizer to a random `arch`."""
    embedded = load_backbone(model, adapter="auto", device=device, dtype="bfloat16")
    if arch == "embedded":
        if group is not None:
            raise SystemExit("--tensor-parallel needs a larger --arch than the embedded model")
        return embedded
    register_attention()
    config = Qwen2Config(**ARCHS[arch])
    if group is None:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                     attn_implementation=ATTN_IMPLEMENTATION).eval()
    else:  # this rank's shard, by the model's tensor-parallel plan, randomly initialized
        group.check(config)
        model = Qwen2ForCausalLM.from_pretrained(None, config=config, state_dict={}, dtype=torch.bfloat16,
                                                 **group.load_kwargs())
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
        model.eval()
    return dataclasses.replace(embedded, model=model, name=f"{arch} (random bf16)", parallel=group)


def local_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights this device holds (its shards, under tensor parallelism)."""
    local = (p.to_local() if hasattr(p, "to_local") else p for p in model.parameters())
    return sum(t.numel() * t.element_size() for t in local)

"""Shared fixtures: a tiny random Llama with the embedded model's tokenizer, loaded by the engine's loader."""

from __future__ import annotations

from pathlib import Path

import pytest


def _tiny(tmp_path_factory: pytest.TempPathFactory, tied: bool) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from duo.engine.loader import embedded_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=tied, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tied embeddings, as SmolLM2's."""
    return _tiny(tmp_path_factory, tied=True)


@pytest.fixture(scope="session")
def untied_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output head of its own, as Qwen2.5's."""
    return _tiny(tmp_path_factory, tied=False)


@pytest.fixture()
def tiny_backbone(tiny_model_dir: Path):
    from duo.engine.loader import load_backbone

    return load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32")

"""Fixtures shared by every test package: the embedded default and a tiny random-config model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    # Triton kernels run on CPU tensors through its interpreter, chosen once, before Triton is imported
    # (transformers' models import it).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    """The safetensors conversion of the embedded GGUF (converted once per cache)."""
    from duo.engine.loader import embedded_checkpoint

    return embedded_checkpoint()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory, embedded_path: Path) -> Path:
    """A 2-layer random Llama with the embedded model's tokenizer and chat template, saved like a hub model."""
    from duo.engine.config import SpecialTokens

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(embedded_path)
    # The DUO tokens already in the vocabulary, with random rows of their own (a "trained" checkpoint).
    tokenizer.add_tokens(SpecialTokens().all(), special_tokens=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_model_path: Path):
    from duo.engine.loader import load_backbone

    return load_backbone(str(tiny_model_path), adapter=None, device="cpu")


@pytest.fixture(scope="session")
def embedded(embedded_path: Path):
    from duo.engine.loader import load_backbone

    return load_backbone(None, adapter=None, device="cpu")

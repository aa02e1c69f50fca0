"""Loading a backbone for DUO: any Hugging Face causal LM, or one of the embedded models.

The embedded models (`duo.engine.embedded`: SmolLM2-135M-Instruct, the default, and Qwen2.5-Coder 0.5B /
1.5B Instruct) ship as GGUF files in data-only packages and are converted once into a safetensors cache;
each has its shipped adapter, merged by default.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from . import embedded as _embedded
from .attention import ATTN_IMPLEMENTATION, register_attention
from .config import SpecialTokens, State

if TYPE_CHECKING:
    from .parallel import TensorParallel

log = logging.getLogger(__name__)

DEFAULT_MODEL = _embedded.DEFAULT.id
DEFAULT_ADAPTER = _embedded.DEFAULT.adapter_dir()
# The default on a CUDA device (the server's): the best trained embedded backbone, when installed.
CUDA_DEFAULT = _embedded.QWEN_15B


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
    """The default embedded model's GGUF file (one part, inside its package)."""
    return _embedded.part_paths(_embedded.DEFAULT)[0]


def embedded_checkpoint(model: str | None = None) -> Path:
    """Path of the safetensors conversion of an embedded model (default: the default), converting it if needed."""
    spec = _embedded.find(model)
    if spec is None:
        raise ValueError(f"{model!r} is not an embedded model ({', '.join(_embedded.EMBEDDED)})")
    return _embedded.checkpoint(spec)


def default_model(device: str = "auto") -> str:
    """The model a server loads when none is named: on CUDA the larger trained backbone if it is installed
    (its packages, or its converted cache) with its shipped adapter, else the embedded default, which runs in
    real time on two CPU cores."""
    if resolve_device(device).type == "cuda" and shipped_adapter(CUDA_DEFAULT):
        try:
            if _embedded.cached(CUDA_DEFAULT) or _embedded.part_paths(CUDA_DEFAULT):
                return CUDA_DEFAULT.id
        except FileNotFoundError as exc:
            log.warning("event=default_model choice=%s reason=%r", DEFAULT_MODEL, str(exc))
    return DEFAULT_MODEL


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
    """Load `model` ready for DUO: an embedded model's name (None: the default), a hub id or a local path.

    `adapter` is a peft adapter folder merged on top; "auto" takes an embedded model's shipped adapter
    (`duo/assets/adapters/<name>/`, if present), None or "none" loads no adapter. With `parallel` this rank
    loads its shard of a hub or local checkpoint (see `parallel.py`).
    """
    special = special or SpecialTokens()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    spec = _embedded.find(model)
    name = spec.id if spec else str(model)
    if spec and parallel is not None:
        raise ValueError("an embedded model fits one device: tensor parallelism is for a larger checkpoint")
    if spec:
        path = _embedded.checkpoint(spec)
        try:
            tokenizer, lm = _load_pretrained(path, torch_device, torch_dtype)
        except Exception as exc:  # a corrupt cache entry: rebuild it once
            log.warning("cache=%s state=corrupt error=%r action=rebuild", path, exc)
            shutil.rmtree(path, ignore_errors=True)
            tokenizer, lm = _load_pretrained(_embedded.checkpoint(spec), torch_device, torch_dtype)
    else:
        tokenizer, lm = _load_pretrained(str(model), torch_device, torch_dtype, parallel)

    missing = [t for t in special.all() if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if adapter == "auto":
        adapter = shipped_adapter(spec) if spec else None
        if spec and adapter is None:
            log.warning("event=no_shipped_adapter model=%s action=load_bare", spec.name)
    if parallel is not None:
        parallel.check_ready(lm, len(tokenizer), adapter)
    elif missing:
        _fit_embeddings(lm, len(tokenizer), tokenizer.convert_tokens_to_ids(missing))
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


def shipped_adapter(spec: _embedded.EmbeddedModel) -> Path | None:
    folder = spec.adapter_dir()
    return folder if (folder / "adapter_config.json").is_file() else None


def _fit_embeddings(model: Any, vocab: int, new_ids: list[int]) -> None:
    """Grow the embeddings to the tokenizer if needed; the new tokens' rows start at the mean of the rows
    before them, in the input table and in an untied output head alike.

    The mean (not a random draw) keeps loading deterministic and leaves the untuned model with no
    preference among the state tokens: training, not initialization, teaches them. Qwen's tables are padded
    past its tokenizer, so its new tokens take existing (never trained) rows: those are set too.
    """
    if vocab > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab, mean_resizing=False)
    first = min(new_ids)
    with torch.no_grad():
        tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m}
        for weight in tables.values():
            weight[new_ids] = weight[:first].mean(dim=0)


def merge_adapter(model: Any, path: Path) -> Any:
    """Merge a peft adapter (LoRA, with trainable token rows) into the weights for plain-speed inference."""
    from peft import PeftModel

    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{path} is not a peft adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()

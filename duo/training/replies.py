"""Self-distillation: the assistant replies in training data are the base model's own greedy answers.

Tuning must teach the state tokens, not new content, so every reply after `process` is what the untuned
model itself says to that query under the same system prompt. Replies are generated once and cached in a
gzipped JSON-lines file keyed by (model, instructions, max_new_tokens, query); the cache for the embedded
default ships with duo, so building the data needs no GPU.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from duo.files import package_data

log = logging.getLogger(__name__)

EMBEDDED_ID = "embedded:smollm2-135m-instruct"
SHIPPED_CACHE = package_data("duo.training", "data", "replies.jsonl.gz")
MAX_NEW_TOKENS = 96


def model_id(model: str | None) -> str:
    """A stable name for the model that wrote the replies, independent of where its files live.

    A local folder holding duo's conversion of the embedded GGUF (it has `duo-cache.json`) is the embedded
    default; anything else is named by what was passed.
    """
    if model is None or model == EMBEDDED_ID:
        return EMBEDDED_ID
    path = Path(model)
    if (path / "duo-cache.json").is_file():
        source = json.loads((path / "duo-cache.json").read_text()).get("source", "")
        if source.startswith("SmolLM2-135M-Instruct"):
            return EMBEDDED_ID
    return str(model)


def cache_key(model: str, instructions: str, query: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    raw = json.dumps([model, instructions, max_new_tokens, query], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class ReplyCache:
    """Replies by key; `save` writes them sorted, so the file is a function of its contents."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with gzip.open(self.path, "rt", encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            entry = json.loads(line)
                            self.entries[entry["key"]] = entry
                        except (ValueError, KeyError) as exc:
                            raise ValueError(f"{self.path}:{n}: not a reply-cache entry ({exc})") from exc

    def get(self, model: str, instructions: str, query: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str | None:
        entry = self.entries.get(cache_key(model, instructions, query, max_new_tokens))
        return None if entry is None else str(entry["reply"])

    def put(self, model: str, instructions: str, query: str, reply: str,
            max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        key = cache_key(model, instructions, query, max_new_tokens)
        self.entries[key] = {"key": key, "model": model, "query": query, "reply": reply}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with gzip.GzipFile(tmp, "wb", mtime=0) as raw:
            for key in sorted(self.entries):
                raw.write((json.dumps(self.entries[key], ensure_ascii=False) + "\n").encode())
        tmp.replace(self.path)


@contextmanager
def plain_attention(model: Any) -> Iterator[None]:
    """Stock SDPA for padded batches outside the engine (generation, baselines, retention)."""
    before = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def generate(backbone: Any, framing: Any, queries: list[str], max_new_tokens: int = MAX_NEW_TOKENS,
             batch_size: int = 64) -> list[str]:
    """Greedy replies of `backbone` to single-turn `queries`, framed exactly as the engine frames a turn."""
    import torch
    from tqdm import tqdm

    model, tokenizer = backbone.model, backbone.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = sorted(backbone.stop_ids)
    out: list[str] = []
    for start in tqdm(range(0, len(queries), batch_size), desc="replies", unit="batch"):
        prompts = [framing.system + framing.user_open + framing.slice_ids(q, True) + framing.user_close_assistant_open
                   for q in queries[start : start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=backbone.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=backbone.device)
        with plain_attention(model), torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=stops, pad_token_id=pad)
        for row in gen[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in backbone.stop_ids), len(row))
            out.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return out


def fill(cache: ReplyCache, backbone: Any, framing: Any, model: str, instructions: str,
         queries: Iterable[str], max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 64) -> int:
    """Generate and cache the replies still missing; returns how many were generated."""
    missing = sorted({q for q in queries if cache.get(model, instructions, q, max_new_tokens) is None})
    if not missing:
        return 0
    log.info("event=replies_generate model=%s count=%d", model, len(missing))
    for query, reply in zip(missing, generate(backbone, framing, missing, max_new_tokens, batch_size),
                            strict=True):
        cache.put(model, instructions, query, reply, max_new_tokens)
    return len(missing)

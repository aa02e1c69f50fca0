"""Self-distillation: the assistant replies in training data are the base model's own greedy answers.

Tuning must teach the state tokens, not new content, so every reply after `process` is what the untuned
model itself says to that query under the same system prompt (after the same earlier turns, for a
follow-up). Replies are generated once and cached in a gzipped JSON-lines file keyed by (model,
instructions, max_new_tokens, query, earlier turns); the caches for the embedded models ship with duo
(`data/replies.jsonl.gz` for the default, `data/replies-<name>.jsonl.gz` for the others), so building their
data needs no GPU.
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
Context = tuple[str, ...]  # earlier turns, user first, alternating with the assistant's replies


def model_id(model: str | None) -> str:
    """A stable name for the model that wrote the replies, independent of where its files live.

    An embedded model's name, or a local folder holding duo's conversion of one (it has `duo-cache.json`),
    is `embedded:<name>`; anything else is named by what was passed.
    """
    from duo.engine.embedded import PREFIX, find

    spec = find(model)
    if spec is not None:
        return spec.id
    assert model is not None
    path = Path(model)
    if (path / "duo-cache.json").is_file():
        manifest = json.loads((path / "duo-cache.json").read_text())
        if manifest.get("name"):
            return PREFIX + str(manifest["name"])
        if str(manifest.get("source", "")).startswith("SmolLM2-135M-Instruct"):  # converted before names
            return EMBEDDED_ID
    return str(model)


def shipped_cache(model: str) -> Path:
    """The reply cache shipped for `model` (a `model_id`); models without one share the default's file."""
    from duo.engine.embedded import find

    spec = find(model) if model.startswith("embedded:") else None
    if spec is None or spec.id == EMBEDDED_ID:
        return SHIPPED_CACHE
    return package_data("duo.training", "data", f"replies-{spec.name}.jsonl.gz")


def cache_key(model: str, instructions: str, query: str, max_new_tokens: int = MAX_NEW_TOKENS,
              context: Context = ()) -> str:
    parts: list[object] = [model, instructions, max_new_tokens, query]
    raw = json.dumps([*parts, list(context)] if context else parts, ensure_ascii=False)
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

    def get(self, model: str, instructions: str, query: str, max_new_tokens: int = MAX_NEW_TOKENS,
            context: Context = ()) -> str | None:
        entry = self.entries.get(cache_key(model, instructions, query, max_new_tokens, context))
        return None if entry is None else str(entry["reply"])

    def put(self, model: str, instructions: str, query: str, reply: str,
            max_new_tokens: int = MAX_NEW_TOKENS, context: Context = ()) -> None:
        key = cache_key(model, instructions, query, max_new_tokens, context)
        self.entries[key] = {"key": key, "model": model, "query": query, "reply": reply,
                             **({"context": list(context)} if context else {})}

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
             batch_size: int = 64, contexts: list[Context] | None = None) -> list[str]:
    """Greedy replies of `backbone` to `queries` (each after its `contexts` entry, if given), framed exactly
    as the engine frames a turn."""
    import torch
    from tqdm import tqdm

    model, tokenizer = backbone.model, backbone.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = sorted(backbone.stop_ids)
    contexts = contexts or [()] * len(queries)
    out: list[str] = []
    for start in tqdm(range(0, len(queries), batch_size), desc="replies", unit="batch"):
        prompts = [framing.history([{"role": "user" if i % 2 == 0 else "assistant", "content": turn}
                                    for i, turn in enumerate(context)])
                   + framing.user_open + framing.slice_ids(q, True) + framing.user_close_assistant_open
                   for q, context in zip(queries[start : start + batch_size],
                                         contexts[start : start + batch_size], strict=True)]
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
         prompts: Iterable[tuple[str, Context]], max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 64) -> int:
    """Generate and cache the replies still missing for (query, earlier turns); returns how many."""
    missing = sorted({(q, c) for q, c in prompts if cache.get(model, instructions, q, max_new_tokens, c) is None})
    if not missing:
        return 0
    log.info("event=replies_generate model=%s count=%d", model, len(missing))
    replies = generate(backbone, framing, [q for q, _ in missing], max_new_tokens, batch_size,
                       [c for _, c in missing])
    for (query, context), reply in zip(missing, replies, strict=True):
        cache.put(model, instructions, query, reply, max_new_tokens, context)
    return len(missing)

"""Self-distilled replies: generated greedily after the same framing the engine uses, earlier turns included,
and cached under keys that tell a follow-up's context apart (the shipped single-turn keys unchanged)."""

from __future__ import annotations

from pathlib import Path

import torch

from duo.engine.framing import ChatFraming
from duo.training.replies import EMBEDDED_ID, ReplyCache, cache_key, fill, model_id, shipped_cache


def _greedy(backbone, ids: list[int], n: int) -> str:
    with torch.no_grad():
        out = backbone.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                                      eos_token_id=sorted(backbone.stop_ids),
                                      pad_token_id=backbone.tokenizer.eos_token_id)[0, len(ids):].tolist()
    cut = next((i for i, t in enumerate(out) if t in backbone.stop_ids), len(out))
    return backbone.tokenizer.decode(out[:cut], skip_special_tokens=True).strip()


def test_fill_answers_each_query_after_its_earlier_turns(tiny_backbone, tmp_path: Path) -> None:
    framing = ChatFraming(tiny_backbone.tokenizer)
    cache = ReplyCache(tmp_path / "replies.jsonl.gz")
    context = ("what's the weather like in paris", "It is sunny in Paris.")
    prompts = [("what about tokyo", ()), ("what about tokyo", context)]
    assert fill(cache, tiny_backbone, framing, "m", "be brief", prompts, max_new_tokens=6, batch_size=2) == 2
    assert fill(cache, tiny_backbone, framing, "m", "be brief", prompts, max_new_tokens=6) == 0  # cached
    cache.save()
    again = ReplyCache(cache.path)
    brief = ChatFraming(tiny_backbone.tokenizer, "be brief")
    history = brief.history([{"role": "user", "content": context[0]}, {"role": "assistant", "content": context[1]}])
    turn = brief.user_open + brief.slice_ids("what about tokyo", True) + brief.user_close_assistant_open
    assert again.get("m", "be brief", "what about tokyo", 6, context) == _greedy(tiny_backbone, history + turn, 6)
    assert again.get("m", "be brief", "what about tokyo", 6) == _greedy(tiny_backbone, brief.system + turn, 6)


def test_keys_without_context_are_the_shipped_ones_and_models_are_named() -> None:
    import hashlib
    import json

    raw = json.dumps([EMBEDDED_ID, "x", 96, "hi"], ensure_ascii=False)
    assert cache_key(EMBEDDED_ID, "x", "hi") == hashlib.sha256(raw.encode()).hexdigest()[:24]
    assert cache_key(EMBEDDED_ID, "x", "hi", 96, ("a", "b")) != cache_key(EMBEDDED_ID, "x", "hi")
    assert model_id(None) == model_id("smollm2-135m-instruct") == EMBEDDED_ID
    assert model_id("qwen2.5-coder-1.5b") == "embedded:qwen2.5-coder-1.5b"
    assert model_id("some/hub-model") == "some/hub-model"
    assert shipped_cache(EMBEDDED_ID).name == "replies.jsonl.gz"
    assert shipped_cache("embedded:qwen2.5-coder-1.5b").name == "replies-qwen2.5-coder-1.5b.jsonl.gz"
    assert shipped_cache("embedded:qwen2.5-coder-0.5b").is_file()

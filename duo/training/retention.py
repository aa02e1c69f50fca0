"""Capability retention: does the tuned model still answer as the base model did?

Two measures on held-out queries (paper §3.2 keeps benchmark scores; here, with self-distilled replies,
the direct check is agreement with the base model): the mean KL divergence KL(base || tuned) of the
next-token distributions along the base model's own greedy answers, and the share of queries whose
greedy answers are token-identical.
"""

from __future__ import annotations

from typing import Any

from .replies import MAX_NEW_TOKENS, generate, plain_attention


def _answer_logprobs(backbone: Any, sequences: list[tuple[list[int], list[int]]], batch: int) -> list[Any]:
    """Log-probabilities [len(answer), V] predicting each answer token (and the stop) after its prompt."""
    import torch

    model = backbone.model
    out = []
    with plain_attention(model), torch.no_grad():
        for start in range(0, len(sequences), batch):
            part = sequences[start : start + batch]
            width = max(len(p) + len(a) for p, a in part)
            ids = torch.zeros((len(part), width), dtype=torch.long, device=backbone.device)
            mask = torch.zeros_like(ids)
            for row, (p, a) in enumerate(part):
                ids[row, : len(p) + len(a)] = torch.tensor(p + a)
                mask[row, : len(p) + len(a)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            for row, (p, a) in enumerate(part):
                out.append(logits[row, len(p) - 1 : len(p) + len(a) - 1].log_softmax(-1).cpu())
    return out


def retention(base: Any, tuned: Any, framing: Any, queries: list[str], max_new_tokens: int = MAX_NEW_TOKENS,
              batch: int = 32) -> dict[str, Any]:
    base_answers = generate(base, framing, queries, max_new_tokens, batch)
    tuned_answers = generate(tuned, framing, queries, max_new_tokens, batch)
    stop = base.tokenizer.eos_token_id
    sequences = []
    for query, answer in zip(queries, base_answers, strict=True):
        prompt = framing.system + framing.user_open + framing.slice_ids(query, True) + framing.user_close_assistant_open
        sequences.append((prompt, [*framing.encode(answer), stop]))
    p = _answer_logprobs(base, sequences, batch)
    q = _answer_logprobs(tuned, sequences, batch)
    kls = [float((a.exp() * (a - b)).sum(-1).mean()) for a, b in zip(p, q, strict=True)]
    identical = sum(a == b for a, b in zip(base_answers, tuned_answers, strict=True))
    return {"queries": len(queries), "kl_mean": sum(kls) / max(1, len(kls)), "kl_max": max(kls, default=0.0),
            "identical_answers": 100 * identical / max(1, len(queries)),
            "examples": [{"query": q_, "base": a, "tuned": b}
                         for q_, a, b in list(zip(queries, base_answers, tuned_answers, strict=True))[:5]]}

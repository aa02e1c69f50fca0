"""The training objective: cross-entropy on the state token after `<|prediction|>` and on the replies.

Logits are computed only where a target exists (a few hundred of a tree's tokens), which keeps the
49K-wide vocabulary projection cheap. The two losses are averaged separately and weighted, so the scarce
state targets are not drowned by the many reply tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .examples import KIND_OUTPUT, KIND_STATE, NO_TARGET


@dataclass
class LossParts:
    loss: torch.Tensor
    state: float
    output: float
    n_state: int
    n_output: int
    state_correct: int  # argmax over the three state tokens equals the target
    kl: float = 0.0  # KL(base || tuned) over the reply positions, when asked for


def target_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, V] at every position that has a target, with those targets and their kinds."""
    hidden = model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
    ).last_hidden_state
    where = batch["target"] != NO_TARGET
    logits = model.get_output_embeddings()(hidden[where]).float()
    return logits, batch["target"][where], batch["kind"][where]


def compute(model: Any, batch: dict[str, torch.Tensor], state_ids: list[int], state_weight: float = 1.0,
            output_weight: float = 0.2, base_logits: torch.Tensor | None = None, kl_weight: float = 0.0) -> LossParts:
    """`base_logits`: the untuned model's logits at the same targets; with `kl_weight` they add
    KL(base || tuned) on the reply tokens, which keeps whole next-token distributions (not only the greedy
    answer the replies were distilled from) where the base model had them: capability retention.
    """
    logits, target, kind = target_logits(model, batch)
    ce = F.cross_entropy(logits, target, reduction="none")
    is_state, is_output = kind == KIND_STATE, kind == KIND_OUTPUT
    zero = logits.sum() * 0.0  # keeps the graph when a batch has no target of a kind
    state = ce[is_state].mean() if is_state.any() else zero
    output = ce[is_output].mean() if is_output.any() else zero
    loss = state_weight * state + output_weight * output
    kl = zero
    if base_logits is not None and kl_weight and is_output.any():
        kl = F.kl_div(logits[is_output].log_softmax(-1), base_logits[is_output].float().log_softmax(-1),
                      log_target=True, reduction="batchmean")
        loss = loss + kl_weight * kl
    correct = 0
    if is_state.any():
        ids = torch.tensor(state_ids, device=logits.device)
        choice = ids[logits[is_state][:, ids].argmax(-1)]
        correct = int((choice == target[is_state]).sum())
    return LossParts(loss, float(state.detach()), float(output.detach()), int(is_state.sum()),
                     int(is_output.sum()), correct, float(kl.detach()))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

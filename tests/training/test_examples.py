"""The conversation tree computes each branch exactly as a plain run of that channel, and its main line
is the engine's own history for the same conversation (ignored input leaves nothing)."""

import torch

from duo.engine.framing import ChatFraming
from duo.training.examples import KIND_OUTPUT, KIND_STATE, Event, collate, encode
from duo.training.train import token_ids

EVENTS = [
    Event("turn", ["set a timer", "for ten minutes"], ["incomplete", "process"], reply="Timer set for ten minutes."),
    Event("noise", ["the prime minister said"], ["ignore"], at=0.5),
    Event("turn", ["what is the", "weather"], [None, "process"], reply="It is sunny.", at=0.7),
    Event("noise", ["pass the salt"], ["ignore"]),
]


def test_tree_logits_equal_separate_runs(tiny_backbone) -> None:
    framing = ChatFraming(tiny_backbone.tokenizer)
    tree = encode(EVENTS, framing, token_ids(tiny_backbone), 2000)
    batch = collate([tree], 0)
    model = tiny_backbone.model
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        for node in [i for i, k in enumerate(tree.kind) if k in (KIND_STATE, KIND_OUTPUT)]:
            alone = model(input_ids=torch.tensor([tree.path(node)])).logits[0, -1]
            torch.testing.assert_close(packed[node], alone, rtol=1e-4, atol=1e-4)
    assert sum(k == KIND_STATE for k in tree.kind) == 5


def test_main_line_is_the_engine_history(tiny_backbone) -> None:
    framing = ChatFraming(tiny_backbone.tokenizer)
    tokens = token_ids(tiny_backbone)
    tree = encode(EVENTS[:3], framing, tokens, 2000)
    first = framing.encode("Timer set for ten minutes.")
    cut = round(0.7 * len(first))  # the barge-in keeps the first reply up to where it was interrupted
    expected = framing.history([
        {"role": "user", "content": "set a timer for ten minutes"},
        {"role": "assistant", "content": tiny_backbone.tokenizer.decode(first[:cut])},
        {"role": "user", "content": "what is the weather"},
        {"role": "assistant", "content": "It is sunny."},
    ])
    main = tree.path(len(tree) - 1)
    assert main == expected
    assert tokens.prediction not in main and all(t not in main for t in tokens.states.values())

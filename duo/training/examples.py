"""One training sequence per conversation: a token tree mirroring what the engine feeds (paper Figure 7).

The engine keeps a conversation as a main line (the prefix, turns, replies) and forks short-lived input
channels off it: a user utterance while idle forks at the prefix's end; speech during a reply forks at the
reply's current token behind `assistant_close`. Each judged slice ends in `<|prediction|>`, whose next
token is the state. Here the whole conversation becomes one tree of tokens: every token has a parent, sees
exactly its ancestors (a 4-D boolean mask) and sits at its depth (explicit position ids), so a branch is
computed exactly as the engine computes that channel — branches never see each other, and an ignored
input leaves nothing in the main line. `<|prediction|>` is a one-token branch off the slice it judges:
rolling it back, as the engine does for `incomplete`, is then simply not continuing from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

NO_TARGET = -100
KIND_NONE, KIND_STATE, KIND_OUTPUT = 0, 1, 2


@dataclass(frozen=True)
class Event:
    """Something heard. `at` (0..1) places it during the previous reply; None: while idle."""

    kind: str  # "turn" (a query answered with `reply`) or "noise" (speech to ignore)
    slices: list[str]
    labels: list[str | None]  # the state after each slice; None: no decision trained there
    reply: str | None = None
    at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "slices": self.slices, "labels": self.labels, "reply": self.reply,
                "at": self.at}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Event:
        return cls(obj["kind"], list(obj["slices"]), list(obj["labels"]), obj.get("reply"), obj.get("at"))


@dataclass(frozen=True)
class TokenIds:
    prediction: int
    states: dict[str, int]  # label -> state token id
    stop: int  # ends an assistant turn (the tokenizer's eos)


@dataclass
class Tree:
    ids: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, at: int, ids: list[int], targets: list[int] | None = None, kind: int = KIND_NONE) -> list[int]:
        """Append a chain of tokens under node `at` (-1: a root). Returns the new nodes."""
        nodes = []
        for i, token in enumerate(ids):
            nodes.append(len(self.ids))
            self.ids.append(token)
            self.parent.append(at)
            target = targets[i] if targets is not None else NO_TARGET
            self.target.append(target)
            self.kind.append(kind if target != NO_TARGET else KIND_NONE)
            at = nodes[-1]
        return nodes

    def cut(self, length: int) -> None:
        del self.ids[length:], self.parent[length:], self.target[length:], self.kind[length:]

    def positions(self) -> list[int]:
        depth: list[int] = []
        for p in self.parent:
            depth.append(0 if p < 0 else depth[p] + 1)
        return depth

    def mask(self) -> torch.Tensor:
        """[L, L] bool: token i attends to token j iff j is i or one of its ancestors."""
        n = len(self.ids)
        mask = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parent):
            if p >= 0:
                mask[i] = mask[p]
            mask[i, i] = True
        return mask

    def path(self, node: int) -> list[int]:
        """Token ids from the root to `node`: the plain sequence this node is computed over."""
        out = []
        while node >= 0:
            out.append(self.ids[node])
            node = self.parent[node]
        return out[::-1]


def encode(events: list[Event], framing: Any, tokens: TokenIds, max_len: int) -> Tree:
    """The tree of one conversation; events that would push it past `max_len` tokens are dropped."""
    tree = Tree()
    head = tree.add(-1, framing.system)[-1]
    reply_nodes: list[int] = []
    for event in events:
        size = len(tree)
        new_head, new_reply = _add_event(tree, event, framing, tokens, head, reply_nodes)
        if len(tree) > max_len:
            tree.cut(size)
            break
        head, reply_nodes = new_head, new_reply
    return tree


def _add_event(tree: Tree, event: Event, framing: Any, tokens: TokenIds, head: int,
               reply_nodes: list[int]) -> tuple[int, list[int]]:
    if event.at is not None and reply_nodes:
        cut = min(max(1, round(event.at * len(reply_nodes))), len(reply_nodes) - 1) if len(reply_nodes) > 1 else 1
        fork, prefix = reply_nodes[cut - 1], list(framing.assistant_close)
    else:
        fork, prefix = head, []
    cur = tree.add(fork, prefix + list(framing.user_open))[-1]
    for i, (text, label) in enumerate(zip(event.slices, event.labels, strict=True)):
        ids = framing.slice_ids(text, first=i == 0)
        if ids:
            cur = tree.add(cur, ids)[-1]
        if label is not None:
            tree.add(cur, [tokens.prediction], [tokens.states[label]], KIND_STATE)
    if event.kind == "noise":
        return head, reply_nodes  # an ignored input leaves nothing behind
    if event.kind != "turn" or event.reply is None:
        raise ValueError(f"a {event.kind!r} event needs kind 'turn' with a reply, or 'noise'")
    reply = framing.encode(event.reply.strip())
    opening = list(framing.user_close_assistant_open)
    seq = opening + reply + [tokens.stop] + framing.close_after_stop(tokens.stop)
    targets = [NO_TARGET] * len(seq)
    for i in range(len(opening) - 1, len(opening) + len(reply)):
        targets[i] = seq[i + 1]
    nodes = tree.add(cur, seq, targets, KIND_OUTPUT)
    return nodes[-1], nodes[len(opening) : len(opening) + len(reply)]


def collate(trees: list[Tree], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch: 4-D mask [B, 1, L, L] (padding attends only to itself), positions, targets, kinds."""
    width = max(len(t) for t in trees)
    batch = len(trees)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    pos = torch.zeros((batch, width), dtype=torch.long)
    target = torch.full((batch, width), NO_TARGET, dtype=torch.long)
    kind = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1)
    for b, tree in enumerate(trees):
        n = len(tree)
        ids[b, :n] = torch.tensor(tree.ids)
        pos[b, :n] = torch.tensor(tree.positions())
        target[b, :n] = torch.tensor(tree.target)
        kind[b, :n] = torch.tensor(tree.kind)
        mask[b, :n, :n] = tree.mask()
    return {"input_ids": ids, "position_ids": pos, "attention_mask": mask[:, None], "target": target,
            "kind": kind}

"""The conversation's items as the client sees them, in order, and the engine history they make.

OpenAI clients keep a copy of the conversation and sync it (`conversation.item.create` with
`previous_item_id`, `.delete`, `.retrieve`). This list is duo's copy; when a client rewrites it, the
engine session is rebuilt from `history()`: system items join the instructions, user and assistant
items become alternating turns (neighbours of one role are joined), and trailing user words are the input
not yet answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import objects as ob

ROOT = "root"  # `previous_item_id: "root"`: insert at the beginning


@dataclass
class History:
    """What an engine session is built from."""

    instructions: str  # system items, in order (appended to the session's instructions)
    turns: list[dict[str, str]]  # alternating, user first, ending with an assistant turn
    pending: str  # user words after the last assistant turn


def words(item: ob.MessageItem) -> str:
    parts = [getattr(c, "text", None) or getattr(c, "transcript", None) or "" for c in item.content]
    return " ".join(p.strip() for p in parts if p and p.strip())


class Items:
    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._items: dict[str, ob.MessageItem] = {}

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> ob.MessageItem | None:
        return self._items.get(item_id)

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, item: ob.MessageItem, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` (at the end when None, first for `root`); returns the item before."""
        if previous_item_id is None or previous_item_id == self.last_id:
            before = self.last_id
            self._items.pop(item.id, None)
            self._items[item.id] = item
        else:
            ordered = [(k, v) for k, v in self._items.items() if k != item.id]
            at = 0 if previous_item_id == ROOT else [k for k, _ in ordered].index(previous_item_id) + 1
            before = ordered[at - 1][0] if at else None
            ordered.insert(at, (item.id, item))
            self._items = dict(ordered)
        while len(self._items) > self.limit:
            del self._items[next(iter(self._items))]
        return before

    def replace(self, item: ob.MessageItem) -> None:
        if item.id in self._items:
            self._items[item.id] = item

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def appended(self, previous_item_id: str | None) -> bool:
        """Whether an item after `previous_item_id` goes at the end (no rewrite of what is there)."""
        return previous_item_id is None or previous_item_id == self.last_id

    def history(self) -> History:
        system: list[str] = []
        turns: list[dict[str, str]] = []
        for item in self._items.values():
            text = words(item)
            if item.role == "system":
                system.append(text)
                continue
            if not turns and item.role == "assistant":
                turns.append({"role": "user", "content": ""})
            if turns and turns[-1]["role"] == item.role:
                turns[-1]["content"] = "\n".join(t for t in (turns[-1]["content"], text) if t)
            else:
                turns.append({"role": item.role, "content": text})
        pending = turns.pop()["content"] if turns and turns[-1]["role"] == "user" else ""
        return History("\n".join(t for t in system if t), turns, pending)

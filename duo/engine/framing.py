"""Conversation framing taken from the backbone's own chat template.

DUO feeds a conversation incrementally: the prefix, a user turn opened by the first slice, slices appended,
the turn closed and the assistant prompt added on `process`, an assistant turn closed by its end token or
cut by an interruption. These pieces are read off the tokenizer's chat template by rendering a few
conversations with sentinel contents and cutting them apart, so any template that renders a conversation
as the concatenation of its turns works (ChatML, Llama 3, Qwen, ...). Training builds its sequences from
the same pieces, so what the model learns is token for token what the engine feeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .detokenizer import FAST_MODULES

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. People talk to you by voice; answer in a few short, plain sentences."
)

_SYS, _U1, _A1, _U2 = "SYSTEMQZXW", "USERQZXWONE", "ASSISTANTQZXW", "USERQZXWTWO"


class TemplateError(ValueError):
    """The chat template does not render a conversation as a concatenation of turns."""


@dataclass(frozen=True)
class TemplatePieces:
    """The text pieces of a chat template (instructions not yet filled in)."""

    system_open: str  # text before the instructions
    system_close: str  # text after the instructions, before the first user turn
    user_open: str
    user_close_assistant_open: str
    assistant_close: str

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TemplatePieces:
        if getattr(tokenizer, "chat_template", None) is None:
            raise TemplateError("the tokenizer has no chat template; pass a chat (instruct) model")

        def render(messages: list[dict[str, str]], gen: bool) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

        sys_u1 = [{"role": "system", "content": _SYS}, {"role": "user", "content": _U1}]
        first = render(sys_u1, True)
        replied = render([*sys_u1, {"role": "assistant", "content": _A1}], False)
        second = render(
            [*sys_u1, {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}], True
        )
        if not (replied.startswith(first) and second.startswith(replied)):
            raise TemplateError("the chat template does not render turns incrementally")
        turn = second[len(replied) :]
        user_open, _, user_close_assistant_open = turn.partition(_U2)
        assistant_close = replied[len(first) :].partition(_A1)[2]
        head = first[: first.find(user_open + _U1)] if user_open else first[: first.find(_U1)]
        system_open, _, system_close = head.partition(_SYS)
        pieces = cls(system_open, system_close, user_open, user_close_assistant_open, assistant_close)
        if first != system_open + _SYS + system_close + user_open + _U1 + user_close_assistant_open:
            raise TemplateError("the chat template renders the first user turn differently from later ones")
        return pieces


def encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """`tokenizer(text, add_special_tokens=False)["input_ids"]`, straight from the Rust backend when that is
    all the call does (a stock fast tokenizer, no truncation or padding set): every slice of every session is
    encoded in the tick, and transformers' own checks cost several times the encoding itself."""
    backend = getattr(tokenizer, "_tokenizer", None)
    cls = type(tokenizer)
    stock = (getattr(cls.__call__, "__module__", "") == "transformers.tokenization_utils_base"
             and getattr(getattr(cls, "_encode_plus", None), "__module__", "") in FAST_MODULES)
    if backend is None or not stock or backend.truncation is not None or backend.padding is not None:
        return lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])
    split = bool(getattr(tokenizer, "split_special_tokens", False))

    def encode(text: str) -> list[int]:
        if backend.encode_special_tokens != split:  # as transformers sets it before each call
            backend.encode_special_tokens = split
        return backend.encode(text, add_special_tokens=False).ids

    return encode


class ChatFraming:
    """Token ids of each framing piece, for one tokenizer and one set of instructions."""

    def __init__(self, tokenizer: Any, instructions: str = DEFAULT_INSTRUCTIONS) -> None:
        self.tokenizer = tokenizer
        self._encode = encoder(tokenizer)
        self.pieces = TemplatePieces.from_tokenizer(tokenizer)
        p = self.pieces
        self.system = self.encode(p.system_open + instructions + p.system_close)
        self.user_open = self.encode(p.user_open)
        self.user_close_assistant_open = self.encode(p.user_close_assistant_open)
        self.assistant_close = self.encode(p.assistant_close)

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def slice_ids(self, text: str, first: bool) -> list[int]:
        """A slice of user speech; later slices of the same turn join the earlier ones with a space."""
        text = text.strip()
        return self.encode(text if first else " " + text) if text else []

    def close_after_stop(self, stop_token: int) -> list[int]:
        """What follows an assistant turn that ended with `stop_token` (e.g. the newline after <|im_end|>)."""
        close = self.assistant_close
        return close[1:] if close and close[0] == stop_token else close

    def history(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Prefix ids for a conversation so far (alternating user / assistant turns, user first)."""
        ids = list(self.system)
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role != ("user" if i % 2 == 0 else "assistant"):
                raise ValueError(f"history must alternate user and assistant turns, user first (turn {i})")
            if role == "user":
                ids += self.user_open + self.slice_ids(content, True) + self.user_close_assistant_open
            else:
                ids += self.encode(content.strip()) + self.assistant_close
        if len(messages) % 2:
            raise ValueError("history must end with an assistant turn")
        return ids


def turn_markers(tokenizer: Any) -> frozenset[int]:
    """A special token that opens a turn ends a reply too: a model that skips its end-of-turn token and starts
    the user's next turn (`<|im_start|>user`) must not speak it."""
    opener = ChatFraming(tokenizer).user_open[:1]
    return frozenset(t for t in opener if t in tokenizer.all_special_ids)

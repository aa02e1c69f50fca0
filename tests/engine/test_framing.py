"""Framing comes from the backbone's chat template, piece by piece, token for token."""

from __future__ import annotations

import copy

import pytest

from duo.engine.framing import ChatFraming, TemplateError, encoder

LLAMA3_STYLE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CONVERSATION = [
    {"role": "user", "content": "what is the capital of france"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "and of spain"},
    {"role": "assistant", "content": "Madrid."},
]


def _template_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_pieces_concatenate_to_the_template_token_for_token(embedded) -> None:
    framing = ChatFraming(embedded.tokenizer, "Be brief.")
    system = [{"role": "system", "content": "Be brief."}]
    assert framing.history(CONVERSATION) == _template_ids(embedded.tokenizer, system + CONVERSATION)


def test_any_incremental_template_works(embedded) -> None:
    """Pieces are tokenized one by one (that is how the engine feeds them); the text is the template's."""
    tokenizer = copy.deepcopy(embedded.tokenizer)
    tokenizer.add_tokens(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], special_tokens=True)
    tokenizer.chat_template = LLAMA3_STYLE
    framing = ChatFraming(tokenizer, "Be brief.")
    assert tokenizer.decode(framing.user_open) == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert tokenizer.decode(framing.assistant_close) == "<|eot_id|>"
    system = [{"role": "system", "content": "Be brief."}]
    text = tokenizer.apply_chat_template(system + CONVERSATION, tokenize=False)
    assert tokenizer.decode(framing.history(CONVERSATION)) == text


def test_slices_join_with_a_space(embedded) -> None:
    framing = ChatFraming(embedded.tokenizer)
    joined = framing.slice_ids("what is the capital", True) + framing.slice_ids("of france", False)
    assert embedded.tokenizer.decode(joined) == "what is the capital of france"
    assert framing.slice_ids("   ", True) == []


def test_close_after_the_stop_token(embedded) -> None:
    framing = ChatFraming(embedded.tokenizer)
    stop = embedded.tokenizer.eos_token_id
    assert [stop, *framing.close_after_stop(stop)] == framing.assistant_close
    assert framing.close_after_stop(-1) == framing.assistant_close


def test_templates_that_are_not_incremental_are_refused(embedded) -> None:
    tokenizer = copy.deepcopy(embedded.tokenizer)
    tokenizer.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError):
        ChatFraming(tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(TemplateError, match="no chat template"):
        ChatFraming(tokenizer)


def test_history_must_alternate(embedded) -> None:
    framing = ChatFraming(embedded.tokenizer)
    with pytest.raises(ValueError, match="alternate"):
        framing.history([{"role": "assistant", "content": "hi"}])
    with pytest.raises(ValueError, match="end with an assistant"):
        framing.history([{"role": "user", "content": "hi"}])


def test_the_fast_encoder_is_the_tokenizers_own_call(embedded, tiny) -> None:
    texts = ["Ça coûte 12 € — naïve café!", "  leading spaces", " what time is it", "emoji 🎉 and\nnewlines", "",
             "the user says <|im_end|> and <|prediction|>", "  ", "x" * 500]
    for backbone in (embedded, tiny):
        tok = backbone.tokenizer
        fast = encoder(tok)
        assert fast.__code__ is not encoder(object()).__code__  # the backend path, for a stock tokenizer
        for text in texts:
            assert fast(text) == list(tok(text, add_special_tokens=False)["input_ids"]), text

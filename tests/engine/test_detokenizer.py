"""Streaming text never splits a character and adds up to the whole."""

from __future__ import annotations

from duo.engine.detokenizer import IncrementalDetokenizer

TEXTS = ["Ça coûte 12 € — naïve café!", "日本語のテキストです。", "emoji 🎉🐍 and\nnewlines", "  leading spaces"]


def test_deltas_add_up_and_are_valid_utf8(embedded) -> None:
    tok = embedded.tokenizer
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        detok = IncrementalDetokenizer(tok)
        deltas = [detok.push(i) for i in ids] + [detok.flush()]
        assert "".join(deltas) == tok.decode(ids) == detok.text
        assert not any("\ufffd" in d for d in deltas)


def test_special_tokens_are_not_spoken(embedded) -> None:
    tok = embedded.tokenizer
    detok = IncrementalDetokenizer(tok)
    for i in tok("hi", add_special_tokens=False)["input_ids"] + [embedded.prediction_id]:
        detok.push(i)
    assert detok.text + detok.flush() == "hi"

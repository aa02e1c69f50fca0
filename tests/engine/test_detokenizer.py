"""Streaming text never splits a character and adds up to the whole."""

from __future__ import annotations

from duo.engine.detokenizer import IncrementalDetokenizer, decoder

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


def test_the_fast_decoder_is_the_tokenizers_own_decode(embedded, tiny) -> None:
    for backbone in (embedded, tiny):
        tok = backbone.tokenizer
        assert decoder(tok).__code__ is not decoder(object()).__code__  # the backend path, for a stock tokenizer
        ids = tok(" ".join(TEXTS), add_special_tokens=False)["input_ids"]
        windows = [ids, ids[3:9], [backbone.prediction_id, *ids[:4], tok.eos_token_id], ids[5:6], []]
        for w in windows:
            assert decoder(tok)(w) == tok.decode(w, skip_special_tokens=True)

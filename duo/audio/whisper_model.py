"""Load a Whisper model: an embedded one by short name, or any Hugging Face Whisper id or local folder."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from duo.audio.errors import ModelLoadError
from duo.audio.whisper_convert import EMBEDDED, ensure_converted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the decoder needs, read from the tokenizer (they differ between English-only and multilingual)."""

    eot: int
    sot: int
    sot_prev: int
    no_timestamps: int
    no_speech: int
    transcribe: int | None
    languages: dict[str, int] = field(default_factory=dict)  # "en" -> id; empty for English-only models


@dataclass
class Whisper:
    """A loaded model with what it needs around it; `name` is what the caller asked for."""

    name: str
    model: Any
    tokenizer: Any
    feature_extractor: Any
    device: str
    ids: SpecialIds
    suppress: list[int]
    suppress_begin: list[int]

    @property
    def multilingual(self) -> bool:
        return bool(self.ids.languages)


def default_model_name(device: str) -> str:
    """`base` where a GPU makes it cheap, `tiny.en` on CPU where base costs ~1.9 s per slice on 2 cores."""
    return "base" if device.startswith("cuda") else "tiny.en"


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _special_ids(tokenizer: Any, multilingual: bool) -> SpecialIds:
    vocab = tokenizer.get_vocab()

    def tid(tok: str) -> int | None:
        return vocab.get(tok)

    required = {t: tid(t) for t in ("<|endoftext|>", "<|startoftranscript|>", "<|startofprev|>", "<|notimestamps|>")}
    missing = [k for k, v in required.items() if v is None]
    if missing:
        raise ModelLoadError(f"tokenizer is not a Whisper tokenizer (missing {missing})")
    no_speech = tid("<|nospeech|>") or tid("<|nocaptions|>")
    if no_speech is None:
        raise ModelLoadError("tokenizer has neither <|nospeech|> nor <|nocaptions|>")
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    languages = {code: i for code in LANGUAGES if (i := tid(f"<|{code}|>")) is not None}
    return SpecialIds(
        eot=required["<|endoftext|>"], sot=required["<|startoftranscript|>"], sot_prev=required["<|startofprev|>"],
        no_timestamps=required["<|notimestamps|>"], no_speech=no_speech, transcribe=tid("<|transcribe|>"),
        languages=languages if multilingual and tid("<|transcribe|>") is not None else {},
    )


def load_whisper(name: str = "auto", device: str | None = None) -> Whisper:
    """Load `tiny.en` / `base` (embedded, converted once), `auto` (by device), or any HF Whisper id / path."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    dev = pick_device(device)
    wanted = default_model_name(dev) if name == "auto" else name
    t0 = time.perf_counter()
    source: str | os.PathLike[str] = ensure_converted(wanted) if wanted in EMBEDDED else wanted
    dtype = torch.float16 if dev.startswith("cuda") else torch.float32
    try:
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype).to(dev).eval()
        tokenizer = WhisperTokenizerFast.from_pretrained(source)
        features = WhisperFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load Whisper {wanted!r}: {exc}") from exc
    gen = model.generation_config
    suppress = list(getattr(gen, "suppress_tokens", None) or model.config.suppress_tokens or [])
    begin = list(getattr(gen, "begin_suppress_tokens", None) or model.config.begin_suppress_tokens or [])
    ids = _special_ids(tokenizer, multilingual=model.config.vocab_size >= 51865)
    whisper = Whisper(wanted, model, tokenizer, features, dev, ids, suppress, begin)
    log.info("whisper_loaded name=%s device=%s seconds=%.2f", wanted, dev, time.perf_counter() - t0)
    return whisper

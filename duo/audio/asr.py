"""Batched greedy Whisper decoding with a forced text prefix and a no-speech probability.

One call encodes every request's audio window in one encoder pass and decodes all of them together: the
decoder inputs are left-padded with explicit position ids and an attention mask, so requests with different
prompt/prefix lengths share each step. A request may carry
- `prompt`: earlier text, fed after `<|startofprev|>` as context only;
- `prefix`: text already committed for this audio, forced after the task tokens, so the model continues it
  instead of re-deciding it (this is how a slice's words stay consistent with the slices before it).
- `draft`: the words a recognition of this audio is expected to continue with (the stream's previous decode
  of the same words). The draft is fed with the context in the first pass and each of its tokens is kept
  while it is greedy's own choice there; decoding goes on from the first that is not. The result is what
  greedy decoding alone gives (up to rounding between one pass and step by step), in a step or two where
  the open slice was already decoded by a partial.
The no-speech probability is read where Whisper predicts the token after `<|startoftranscript|>`.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from duo.audio.decode import SAMPLE_RATE
from duo.audio.errors import AudioError, AudioFormatError
from duo.audio.whisper_model import Whisper

log = logging.getLogger(__name__)

MAX_AUDIO_S = 30.0
MAX_POSITIONS = 448
MAX_PROMPT = 223  # as in OpenAI's decoder: at most half the context is earlier text


@dataclass
class DecodeRequest:
    """One audio window (16 kHz, at most 30 s) and the text context to decode it with."""

    audio: np.ndarray
    prefix: list[int] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)
    language: str | None = None
    max_new_tokens: int = 64
    draft: list[int] = field(default_factory=list)


@dataclass
class DecodeResult:
    tokens: list[int]  # new text tokens after the prefix, without end-of-text
    no_speech_prob: float
    avg_logprob: float
    language: str | None


class Recognizer:
    """Greedy, batched Whisper decoding on the model's device."""

    def __init__(self, whisper: Whisper) -> None:
        import torch

        self.whisper = whisper
        self._torch = torch
        decoder = whisper.model.model.decoder
        params = inspect.signature(decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        self._dtype = next(whisper.model.parameters()).dtype

    def text(self, tokens: list[int]) -> str:
        return self.whisper.tokenizer.decode(tokens, skip_special_tokens=True)

    def _features(self, audio: list[np.ndarray]):
        for a in audio:
            if a.ndim != 1 or a.size == 0 or a.size > MAX_AUDIO_S * SAMPLE_RATE:
                raise AudioFormatError(f"Whisper needs 1..{MAX_AUDIO_S:.0f} s of 16 kHz mono, got {a.shape}")
        extra = {"device": self.whisper.device} if self.whisper.device.startswith("cuda") else {}  # STFT on the GPU
        feats = self.whisper.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", **extra)
        return feats.input_features.to(self.whisper.device, self._dtype)

    def _detect(self, enc, rows: list[int]) -> dict[int, str]:
        """Language of each listed row, from the logits after a bare start-of-transcript."""
        torch, ids = self._torch, self.whisper.ids
        dec = self.whisper.model.model.decoder
        inp = torch.full((len(rows), 1), ids.sot, device=enc.device)
        h = dec(input_ids=inp, encoder_hidden_states=enc[rows], use_cache=False).last_hidden_state
        logits = self.whisper.model.proj_out(h[:, -1]).float()
        codes, lang_ids = list(ids.languages), list(ids.languages.values())
        best = logits[:, lang_ids].argmax(-1).tolist()
        return {r: codes[b] for r, b in zip(rows, best, strict=True)}

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode all requests together; results come back in request order."""
        if not requests:
            return []
        from torch.nn.attention import SDPBackend, sdpa_kernel

        torch, w = self._torch, self.whisper
        ids = w.ids
        # cuDNN's attention builds a new plan on the host for every new sequence length (each decoding step):
        # ~7 ms of CPU per call, which made a GPU decode slower than a CPU one. The other kernels have no setup.
        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        with torch.inference_mode(), sdpa_kernel(backends):
            enc = w.model.model.encoder(self._features([r.audio for r in requests])).last_hidden_state
            languages: list[str | None] = [r.language for r in requests]
            if w.multilingual:
                unknown = [i for i, lang in enumerate(languages) if lang is None]
                for i, code in (self._detect(enc, unknown) if unknown else {}).items():
                    languages[i] = code
                for lang in languages:
                    if lang not in ids.languages:
                        raise AudioError(f"language {lang!r} is not one this Whisper model knows")
            heads, sot_at, budgets = [], [], []
            for r, lang in zip(requests, languages, strict=True):
                task = [ids.languages[lang], ids.transcribe] if w.multilingual and lang else []
                prompt = [ids.sot_prev, *r.prompt[-MAX_PROMPT:]] if r.prompt else []
                seq = [*prompt, ids.sot, *task, ids.no_timestamps, *r.prefix]
                if len(seq) >= MAX_POSITIONS - 1:
                    raise AudioError(f"text context of {len(seq)} tokens leaves no room in Whisper's 448")
                heads.append(seq)
                sot_at.append(len(prompt))
                budgets.append(max(1, min(r.max_new_tokens, MAX_POSITIONS - len(seq))))
            drafts = [[t for t in r.draft if t < ids.eot][:b] for r, b in zip(requests, budgets, strict=True)]
            return self._greedy(enc, heads, drafts, sot_at, budgets, [bool(r.prefix) for r in requests], languages)

    def _greedy(self, enc, heads, drafts, sot_at, budgets, has_prefix, languages) -> list[DecodeResult]:
        """Greedy continuation of each head, its draft verified in the first pass (see the module docstring).

        A draft's rejected tokens stay in the cache but are masked out: rows keep one shared cache whatever
        each one accepted, and the next token takes the first rejected one's position.
        """
        from transformers import DynamicCache, EncoderDecoderCache

        torch, w = self._torch, self.whisper
        ids, dev, n = w.ids, enc.device, len(heads)
        seqs = [h + d for h, d in zip(heads, drafts, strict=True)]
        width = max(len(s) for s in seqs)
        # built on the host and copied once each: a copy per row held the interpreter for each of them
        inp = torch.tensor([[ids.eot] * (width - len(s)) + s for s in seqs], dtype=torch.long, device=dev)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long, device=dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        dec, proj = w.model.model.decoder, w.model.proj_out
        h = dec(input_ids=inp, attention_mask=mask, position_ids=pos, encoder_hidden_states=enc,
                use_cache=True, **{self._cache_kw: cache}).last_hidden_state
        sot_pos = torch.tensor([width - len(s) + a for s, a in zip(seqs, sot_at, strict=True)], device=dev)
        no_speech = proj(h[torch.arange(n, device=dev), sot_pos]).float().softmax(-1)[:, ids.no_speech].tolist()
        block = torch.zeros(proj.out_features, dtype=torch.bool, device=dev)
        block[ids.eot + 1 :] = True  # every special and timestamp token
        block[[t for t in w.suppress if 0 <= t < block.numel()]] = True
        begin = torch.zeros_like(block)
        begin[[t for t in w.suppress_begin if 0 <= t < block.numel()]] = True
        # the predictions after each head and after each of its draft tokens, in one projection
        row = [i for i, d in enumerate(drafts) for _ in range(len(d) + 1)]
        col = [width - len(d) - 1 + j for d in drafts for j in range(len(d) + 1)]
        logits = proj(h[row, col]).float().masked_fill(block, -math.inf)
        first = [not has_prefix[i] and c == width - len(drafts[i]) - 1 for i, c in zip(row, col, strict=True)]
        logits = logits.masked_fill(torch.tensor(first, device=dev)[:, None] & begin[None, :], -math.inf)
        toks, chosen = self._choose(logits)
        out: list[list[int]] = [[] for _ in range(n)]
        logprob, done = [0.0] * n, [False] * n
        at = 0
        for i, d in enumerate(drafts):
            for j in range(len(d) + 1):
                if j < len(d) and toks[at + j] == d[j]:
                    out[i].append(d[j])
                    logprob[i] += chosen[at + j]
                    if len(out[i]) >= budgets[i]:
                        done[i] = True
                        break
                    continue
                self._take(i, toks[at + j], chosen[at + j], out, logprob, done, budgets)
                break
            at += len(d) + 1
        accepted = [len(o) - (0 if done[i] else 1) for i, o in enumerate(out)]
        for i, (d, a) in enumerate(zip(drafts, accepted, strict=True)):
            if a < len(d):  # the rejected tail: never attended to again
                mask[i, width - len(d) + a :] = 0
        last = torch.tensor([len(hd) - 1 + a for hd, a in zip(heads, accepted, strict=True)], device=dev)
        while not all(done):
            feed = torch.tensor([ids.eot if done[i] else out[i][-1] for i in range(n)], device=dev)
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=dev)], dim=1)
            last = last + 1
            step_pos = last[:, None].clamp(max=MAX_POSITIONS - 1)
            h = dec(input_ids=feed[:, None], attention_mask=mask, position_ids=step_pos,
                    encoder_hidden_states=enc, use_cache=True, **{self._cache_kw: cache}).last_hidden_state
            toks, chosen = self._choose(proj(h[:, -1]).float().masked_fill(block, -math.inf))
            for i in range(n):
                if not done[i]:
                    self._take(i, toks[i], chosen[i], out, logprob, done, budgets)
        return [
            DecodeResult(o, float(ns), lp_sum / (len(o) + 1), lang)
            for o, ns, lp_sum, lang in zip(out, no_speech, logprob, languages, strict=True)
        ]

    def _choose(self, logits) -> tuple[list[int], list[float]]:
        """Greedy token of each row and its log-probability (one copy to the host)."""
        lp = logits.log_softmax(-1)
        tok = lp.argmax(-1)
        return tok.tolist(), lp.gather(-1, tok[:, None])[:, 0].tolist()

    def _take(self, i: int, tok: int, chosen: float, out: list[list[int]], logprob: list[float],
              done: list[bool], budgets: list[int]) -> None:
        """Row `i` takes greedy's next token: end of text and a spent budget end it."""
        eot = self.whisper.ids.eot
        if tok == eot or len(out[i]) >= budgets[i]:
            done[i] = True
            logprob[i] += chosen if tok == eot else 0.0
        else:
            out[i].append(tok)
            logprob[i] += chosen

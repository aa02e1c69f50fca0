"""`duo prepare`: make every model asset ready ahead of time, so `duo serve` starts offline and converts nothing.

The image build runs it once; on a bare host it saves the first `duo serve` its conversions. Each step reports
what it did (converted, cached, fetched, ok, skipped or failed):

- model: an embedded model's safetensors conversion (`$DUO_CACHE_DIR/models`; split GGUF parts are joined and
  checked first), or a hub model downloaded into the Hugging Face cache (`$HF_HOME`), or a local model folder
  checked for a `config.json`;
- adapter: the model loaded on the CPU with its adapter merged, which proves both usable (for an embedded
  model, whose shipped adapter must be present: the loader would otherwise quietly serve the bare model);
- asr:NAME: each Whisper conversion (`$DUO_CACHE_DIR/whisper`);
- vad and tts: the voice-activity model loads and the speech-output backend speaks a word.

A failed step does not stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# What `from_pretrained` needs of a hub repository: config, tokenizer, chat template and safetensors weights.
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
DEFAULT_ASR = "tiny.en,base"
MODEL_HELP = ("an embedded model (smollm2-135m-instruct, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a Hugging Face "
              "causal-LM id or a local path (default: the embedded smollm2-135m-instruct)")


@dataclass
class Step:
    name: str
    status: str  # converted, cached, fetched, ok, skipped, failed
    detail: str = ""
    path: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _run(name: str, work: Callable[[], tuple[str, str, str | None]]) -> Step:
    t0 = time.perf_counter()
    try:
        status, detail, path = work()
    except Exception as exc:  # any failure is reported with the others, and fails the command
        return Step(name, "failed", f"{type(exc).__name__}: {exc}", None, round(time.perf_counter() - t0, 2))
    return Step(name, status, detail, path, round(time.perf_counter() - t0, 2))


def _manifests(folder: Path, pattern: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.glob(pattern)} if folder.is_dir() else {}


def _was_cached(before: dict[Path, int], manifest: Path) -> bool:
    return before.get(manifest) == manifest.stat().st_mtime_ns


def _fetch(repo: str) -> tuple[str, str, str | None]:
    """A hub repository into the Hugging Face cache (already there: only its revision is checked)."""
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(repo, allow_patterns=HUB_FILES))
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{repo} has no safetensors weights")
    return "fetched", "in the Hugging Face cache", str(path)


def is_embedded(model: str | None) -> bool:
    from duo.engine.embedded import find

    return find(model) is not None


def model_step(model: str | None) -> tuple[str, str, str | None]:
    from duo.engine.embedded import checkpoint, find
    from duo.files import cache_root

    spec = find(model)
    if spec is not None:
        before = _manifests(cache_root() / "models", "*/duo-cache.json")
        path = checkpoint(spec)
        status = "cached" if _was_cached(before, path / "duo-cache.json") else "converted"
        return status, f"embedded {spec.title} as safetensors", str(path)
    assert model is not None
    if Path(model).is_dir():
        if not (Path(model) / "config.json").is_file():
            raise FileNotFoundError(f"{model} has no config.json: not a Hugging Face model folder")
        return "ok", "local model folder", str(Path(model).resolve())
    return _fetch(model)


def adapter_step(model: str | None, adapter: str) -> tuple[str, str, str | None]:
    from duo.engine.embedded import find
    from duo.engine.loader import load_backbone

    spec = find(model)
    shipped = spec.adapter_dir() if spec else None
    if shipped and adapter == "auto" and not (shipped / "adapter_config.json").is_file():
        raise FileNotFoundError(f"the shipped adapter is missing from {shipped}")
    if not spec:
        if adapter in ("auto", "none"):
            return "skipped", "no adapter; the model loads when the server starts", None
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
        return "ok", "adapter folder present; merged when the server starts", str(Path(adapter).resolve())
    backbone = load_backbone(model, adapter=None if adapter == "none" else adapter, device="cpu")
    path = shipped if adapter == "auto" else None if adapter == "none" else Path(adapter)
    return "ok", f"{backbone.name} loads and merges on the CPU", str(path) if path else None


def asr_step(name: str) -> tuple[str, str, str | None]:
    from duo.audio.whisper_convert import EMBEDDED, MANIFEST, cache_root, ensure_converted

    if name not in EMBEDDED:
        if Path(name).is_dir():
            return "ok", "local Whisper folder", str(Path(name).resolve())
        return _fetch(name)
    before = _manifests(cache_root(), f"*/{MANIFEST}")
    folder = ensure_converted(name)
    status = "cached" if _was_cached(before, folder / MANIFEST) else "converted"
    return status, f"Whisper {name} as a Hugging Face folder", str(folder)


def vad_step() -> tuple[str, str, str | None]:
    from duo.audio.vad import SileroVad, silero_model_path

    SileroVad()
    return "ok", "Silero VAD loads", str(silero_model_path())


def tts_step(backend: str) -> tuple[str, str, str | None]:
    from duo.audio.tts import load_voice

    voice = load_voice(backend)
    samples, rate = voice.synthesize("Ready.")
    if len(samples) == 0:
        raise RuntimeError(f"{voice.name} produced no audio")
    return "ok", f"{voice.name} speaks ({len(samples) / rate:.2f} s of audio for one word)", None


def prepare(model: str | None = None, adapter: str = "auto", asr: list[str] | None = None,
            tts: str = "auto") -> list[Step]:
    """Every step in order; the model comes first because the adapter check loads it."""
    asr = DEFAULT_ASR.split(",") if asr is None else asr
    steps = [_run("model", lambda: model_step(model))]
    steps.append(_run("adapter", lambda: adapter_step(model, adapter)) if steps[0].ok
                 else Step("adapter", "skipped", "the model step failed"))
    steps += [_run(f"asr:{name}", lambda name=name: asr_step(name)) for name in asr]
    if asr:
        steps.append(_run("vad", vad_step))
    steps.append(Step("tts", "skipped", "speech output off") if tts == "none" else _run("tts", lambda: tts_step(tts)))
    return steps


def cache_dir() -> Path:
    from duo.files import cache_root

    return cache_root()


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    asr = [] if args.asr.strip() == "none" else [a.strip() for a in args.asr.split(",") if a.strip()]
    steps = prepare(args.model, args.adapter, asr, args.tts)
    ok = all(s.ok for s in steps)
    report: dict[str, Any] = {"cache_dir": str(cache_dir()), "hf_home": os.environ.get("HF_HOME"), "ok": ok,
                              "steps": [asdict(s) for s in steps]}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"duo prepare: cache {report['cache_dir']}")
        for s in steps:
            print(f"  {s.name:<12} {s.status:<10} {s.seconds:6.2f} s  {s.detail}" + (f"  [{s.path}]" if s.path else ""))
    if not ok:
        print("duo prepare: failed: " + ", ".join(s.name for s in steps if not s.ok), file=sys.stderr)
    return 0 if ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert and check every model asset ahead of time (the image build runs it)",
                       description="Make every model asset ready ahead of time, so `duo serve` starts offline and "
                                   "converts nothing. Caches go under $DUO_CACHE_DIR, hub downloads under $HF_HOME.")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--adapter", default="auto",
                   help="peft adapter folder; 'auto' = the shipped one for an embedded model, 'none' = no adapter")
    p.add_argument("--asr", default=DEFAULT_ASR,
                   help=f"comma-separated Whisper models to convert or fetch, or 'none' (default {DEFAULT_ASR})")
    p.add_argument("--tts", default="auto", help="speech output to check: auto, piper, espeak-ng, none")
    p.add_argument("--json", action="store_true", help="one JSON report instead of text")
    p.set_defaults(func=run)

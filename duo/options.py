"""Command-line options shared by every sub-command that loads a model or opens sessions."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duo.engine.config import SessionConfig
    from duo.engine.loader import Backbone


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="an embedded model (smollm2-135m-instruct, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a "
                        "Hugging Face causal-LM id or a local path (default: the embedded smollm2-135m-instruct)")
    g.add_argument("--adapter", default="auto",
                   help="peft adapter folder merged on top; 'none' for the bare model (default: an embedded "
                        "model's shipped one)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    g.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")


def add_session_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DUO decoding")
    g.add_argument("--instructions", default=None, help="system instructions (default: a voice-assistant prompt)")
    g.add_argument("--forecast-tokens", type=int, default=4, help="tokens forecast after <|prediction|> (k)")
    g.add_argument("--process-threshold", type=float, default=0.5, help="p(process) needed to answer")
    g.add_argument("--ignore-threshold", type=float, default=0.5, help="p(ignore) needed to drop an input")
    g.add_argument("--act-before-pause", action="store_true",
                   help="answer a `process` slice at once, not at the speaker's pause")
    g.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--max-new-tokens", type=int, default=256)


def load_from_args(args: argparse.Namespace) -> Backbone:
    from duo.engine.loader import load_backbone

    adapter = None if args.adapter == "none" else args.adapter
    return load_backbone(args.model, adapter=adapter, device=args.device, dtype=args.dtype)


def session_config_from_args(args: argparse.Namespace) -> SessionConfig:
    from duo.engine.config import SamplingParams, SessionConfig, Thresholds

    return SessionConfig(
        instructions=args.instructions,
        forecast_tokens=args.forecast_tokens,
        thresholds=Thresholds(process=args.process_threshold, ignore=args.ignore_threshold),
        process_waits_for_pause=not args.act_before_pause,
        sampling=SamplingParams(temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                max_new_tokens=args.max_new_tokens),
    )

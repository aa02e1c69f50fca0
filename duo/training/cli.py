"""`duo data build`, `duo train`, `duo eval`: the minimal-training recipe from the command line.

Heavy imports (torch, transformers) happen inside the handlers so `duo --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="build state-token training data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    build = data_sub.add_parser("build", help="sources -> conversations, eval files and statistics")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--model", default=None,
                       help="model whose replies are used: an embedded model's name, a hub id or a path "
                            "(default: the embedded SmolLM2-135M-Instruct)")
    build.add_argument("--replies", default=None, help="reply cache (default: the one shipped for the model)")
    build.add_argument("--offline", action="store_true", help="fail instead of generating missing replies")
    build.add_argument("--asr-ratio", type=float, default=0.7, help="share of items in recognizer form")
    build.add_argument("--train-decisions", type=int, default=10_000)
    build.add_argument("--device", default="auto")
    build.add_argument("--batch", type=int, default=64, help="reply generation batch size")
    build.set_defaults(func=cmd_data_build)

    train = subparsers.add_parser("train", help="fine-tune the state tokens (LoRA by default)")
    train.add_argument("--data", required=True, help="folder written by `duo data build`")
    train.add_argument("--out", required=True, help="run folder (checkpoints, logs, adapter/)")
    train.add_argument("--model", default=None,
                       help="backbone: an embedded model's name, a hub id or a path (default: embedded SmolLM2)")
    train.add_argument("--method", choices=("lora", "full"), default="lora")
    train.add_argument("--lora-r", type=int, default=8)
    train.add_argument("--lora-alpha", type=int, default=16)
    train.add_argument("--lora-targets", default=None, help="comma-separated module names")
    train.add_argument("--lr", type=float, default=None, help="default 2e-4 (LoRA) / 8e-6 (full)")
    train.add_argument("--steps", type=int, default=600)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--state-weight", type=float, default=1.0)
    train.add_argument("--output-weight", type=float, default=0.2)
    train.add_argument("--kl-weight", type=float, default=0.0,
                       help="weight of KL(base || tuned) on reply tokens, for capability retention (LoRA)")
    train.add_argument("--max-len", type=int, default=1024)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save-every", type=int, default=200)
    train.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    train.add_argument("--device", default="auto")
    train.set_defaults(func=cmd_train)

    ev = subparsers.add_parser("eval", help="state-decision metrics on a JSONL file")
    ev.add_argument("--data", required=True, help="JSONL rows {history, input, label}")
    ev.add_argument("--model", default=None)
    ev.add_argument("--adapter", default="auto", help="adapter folder, 'auto' (shipped) or 'none'")
    ev.add_argument("--baseline", choices=("none", "zero-shot", "5-shot"), default="none",
                    help="prompt the untuned model to classify instead of using the engine")
    ev.add_argument("--shots", default=None, help="JSONL to draw the 5 examples from (default: --data)")
    ev.add_argument("--process-threshold", type=float, default=0.5)
    ev.add_argument("--ignore-threshold", type=float, default=0.5)
    ev.add_argument("--batch", type=int, default=64, help="sessions per engine tick")
    ev.add_argument("--retention", type=int, default=0, metavar="N",
                    help="also compare tuned and base answers on N process inputs")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plot", default=None, help="write the confusion matrix as an image")
    ev.add_argument("--predictions", default=None, metavar="FILE",
                    help="write each row with its decided state and the three probabilities (JSONL)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--dtype", default="auto")
    ev.set_defaults(func=cmd_eval)


def cmd_data_build(args: argparse.Namespace) -> int:
    from duo.engine.framing import DEFAULT_INSTRUCTIONS

    from .data import BuildConfig, MissingReplies, build, format_stats
    from .replies import Context, ReplyCache, fill, model_id, shipped_cache

    name = model_id(args.model)
    cache = ReplyCache(Path(args.replies) if args.replies else shipped_cache(name))
    config = BuildConfig(seed=args.seed, asr_ratio=args.asr_ratio, train_decisions=args.train_decisions)

    def fill_missing(prompts: list[tuple[str, Context]]) -> None:
        from duo.engine.framing import ChatFraming
        from duo.engine.loader import load_backbone

        backbone = load_backbone(args.model, adapter=None, device=args.device)
        started = time.time()
        n = fill(cache, backbone, ChatFraming(backbone.tokenizer, DEFAULT_INSTRUCTIONS), name, DEFAULT_INSTRUCTIONS,
                 prompts, config.max_new_tokens, args.batch)
        cache.save()
        log.info("event=replies_cached count=%d seconds=%.1f cache=%s", n, time.time() - started, cache.path)

    try:
        stats = build(Path(args.out), config, cache, name, DEFAULT_INSTRUCTIONS,
                      None if args.offline else fill_missing)
    except MissingReplies as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_stats(stats))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import LORA_TARGETS, TrainConfig, train

    targets = [t.strip() for t in args.lora_targets.split(",")] if args.lora_targets else list(LORA_TARGETS)
    config = TrainConfig(data=args.data, out=args.out, model=args.model, method=args.method, lora_r=args.lora_r,
                         lora_alpha=args.lora_alpha, lora_targets=targets, lr=args.lr, steps=args.steps,
                         batch_size=args.batch_size, state_weight=args.state_weight,
                         output_weight=args.output_weight, kl_weight=args.kl_weight, max_len=args.max_len,
                         seed=args.seed, save_every=args.save_every, device=args.device)
    summary = train(config, resume=not args.no_resume)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from duo.engine.config import Thresholds

    from .evaluate import (
        EvalDataError,
        engine_decisions,
        format_report,
        load_rows,
        metrics,
        pick_shots,
        plot_confusion,
        prompt_decisions,
    )

    try:
        rows = load_rows(Path(args.data))
        shots = pick_shots(load_rows(Path(args.shots or args.data))) if args.baseline == "5-shot" else []
    except EvalDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from duo.engine.loader import load_backbone

    thresholds = Thresholds(process=args.process_threshold, ignore=args.ignore_threshold)
    adapter = None if args.baseline != "none" else (None if args.adapter == "none" else args.adapter)
    backbone = load_backbone(args.model, adapter=adapter, device=args.device, dtype=args.dtype)
    started = time.time()
    if args.baseline == "none":
        decided = engine_decisions(backbone, rows, thresholds, args.batch, progress=not args.json)
    else:
        decided = prompt_decisions(backbone, rows, shots, thresholds, max(1, args.batch // 2), not args.json)
    result: dict[str, Any] = metrics([r["label"] for r in rows], [d[0] for d in decided])
    result.update(model=backbone.name, mode=args.baseline if args.baseline != "none" else "engine",
                  seconds=round(time.time() - started, 2), thresholds=thresholds.__dict__)
    if args.retention:
        from duo.engine.framing import DEFAULT_INSTRUCTIONS, ChatFraming

        from .retention import retention

        queries = [r["input"] for r in rows if r["label"] == "process"][: args.retention]
        base = load_backbone(args.model, adapter=None, device=args.device, dtype=args.dtype)
        result["retention"] = retention(base, backbone, ChatFraming(base.tokenizer, DEFAULT_INSTRUCTIONS), queries)
    if args.predictions:
        with Path(args.predictions).open("w", encoding="utf-8") as f:
            for row, (state, probs) in zip(rows, decided, strict=True):
                f.write(json.dumps({**row, "state": state, "probs": probs}) + "\n")
    if args.plot:
        plot_confusion(result, Path(args.plot), f"{result['model']} ({result['mode']})")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_report(f"{result['model']} ({result['mode']})", result))
        if "retention" in result:
            r = result["retention"]
            print(f"retention on {r['queries']} queries: KL(base||tuned) mean {r['kl_mean']:.4f} "
                  f"max {r['kl_max']:.4f}; identical greedy answers {r['identical_answers']:.1f}%")
    return 0

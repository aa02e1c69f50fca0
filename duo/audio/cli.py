"""`duo transcribe FILE [--json]`: the slices, speech events and text a live session would produce."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("transcribe", help="transcribe an audio file slice by slice, as a live session would")
    p.add_argument("file", help="WAV / FLAC / OGG file (any rate; mixed to mono)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--model", default="auto", help="tiny.en, base, auto (default) or a Hugging Face Whisper id/path")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--language", default="en", help="language for multilingual models ('auto' detects it)")
    p.add_argument("--slice", type=float, default=2.0, help="slice length in seconds (0.5-4, default 2)")
    p.add_argument("--pause", type=float, default=0.3, help="pause that ends an utterance, seconds (default 0.3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from duo.audio.asr import Recognizer
    from duo.audio.decode import load_file
    from duo.audio.errors import AudioError
    from duo.audio.events import SpeechStarted, SpeechStopped
    from duo.audio.pipeline import stream_events
    from duo.audio.slicer import SlicerConfig
    from duo.audio.transcriber import TranscriberConfig
    from duo.audio.whisper_model import load_whisper

    hf_logging.disable_progress_bar()
    try:
        samples = load_file(args.file)
        slicer_config = SlicerConfig(slice_s=args.slice, pause_s=args.pause)
        language = None if args.language == "auto" else args.language
        recognizer = Recognizer(load_whisper(args.model, args.device))
        events = stream_events(samples, recognizer, slicer_config, TranscriberConfig(language=language))
        for event in events:
            if args.json:
                row = {"type": type(event).__name__, **{k: v for k, v in vars(event).items() if k != "audio"}}
                print(json.dumps(row, ensure_ascii=False), flush=True)
            elif isinstance(event, SpeechStarted):
                print(f"{event.time_s:8.2f}            speech started  (utterance {event.utterance_id})", flush=True)
            elif isinstance(event, SpeechStopped):
                print(f"{event.time_s:8.2f}            speech stopped  (utterance {event.utterance_id})", flush=True)
            else:
                mark = "final" if event.final else "     "
                print(f"{event.start_s:8.2f} {event.end_s:8.2f}  {mark}  {event.text}", flush=True)
    except AudioError as exc:
        print(f"duo transcribe: {exc}", file=sys.stderr)
        return 2
    return 0

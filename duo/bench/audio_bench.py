"""Audio front end speed: recognition per slice (batch 1 and 16), VAD cost, time to first speech.

Workload: the recorded telephone call shipped with pyannote (30 s, real speech) goes through the slicer; its
slices are recognized in order as one live stream would (batch 1), then as 16 streams whose slices are ready
at the same moment (batch 16, one decode call per round). Latency is the wall time from a closed slice to its
text. RTF is decode time over audio time (below 1 is faster than real time; for batch 16, over 16 streams'
audio). VAD cost is measured per second of audio, one stream and 16 batched, at torch's own CPU thread count and
at one (what a server beside a GPU model uses). TTS time to first chunk is from
reply text to the first PCM16 chunk. `--beside-tts N ...` times recognition again (batch 1, the first
model) while N threads render Piper speech without pause, as a server speaking N replies does, with the
voice's ONNX Runtime threads spinning between work items (onnxruntime's default) and resting, its pool at
each `--tts-threads` size, and reports the speech rendered per second beside it. Prints one JSON object per
measurement, then a summary table.

    python bench/audio_bench.py [--models tiny.en base] [--device cpu|cuda] [--batch 1 16] [--rounds 3]
                                [--beside-tts 0 2 8] [--tts-threads 0 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from duo.audio.asr import Recognizer
from duo.audio.decode import SAMPLE_RATE, load_file
from duo.audio.events import AudioSlice
from duo.audio.slicer import Slicer
from duo.audio.transcriber import StreamTranscriber, transcribe_batch
from duo.audio.vad import FRAME, SileroVad, VadState
from duo.audio.whisper_model import load_whisper, pick_device

REPLY = "Sure, I have set a timer for ten minutes. I will let you know when it rings."
STORY = ("Once upon a time, in a land of rolling hills and quiet rivers, there lived a dragon who had never learned "
         "to fly, and every morning she watched the birds rise over the valley.")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{model} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def call_audio() -> np.ndarray:
    spec = importlib.util.find_spec("pyannote")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bench needs pyannote-audio's sample call (pip install --no-deps pyannote-audio==4.0.7)")
    return load_file(Path(next(iter(spec.submodule_search_locations))) / "audio" / "sample" / "sample.wav")


def call_slices(audio: np.ndarray) -> list[AudioSlice]:
    slicer = Slicer()
    return [e for e in [*slicer.push(audio), *slicer.flush()] if isinstance(e, AudioSlice)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_asr(model: str, device: str, batch: int, rounds: int, slices: list[AudioSlice]) -> dict[str, Any]:
    recognizer = Recognizer(load_whisper(model, device))
    transcribe_batch([(StreamTranscriber(recognizer), slices[0])])  # warm-up
    streams = [StreamTranscriber(recognizer) for _ in range(batch)]
    n_rounds = len(slices) if batch == 1 else min(rounds, len(slices))
    latencies, audio_s = [], 0.0
    for piece in slices[:n_rounds]:
        sync(device)
        t0 = time.perf_counter()
        transcribe_batch([(s, piece) for s in streams])
        sync(device)
        latencies.append(time.perf_counter() - t0)
        audio_s += (piece.end_s - piece.start_s) * batch
    return {
        "what": "asr", "model": model, "device": device, "batch": batch, "slices": n_rounds,
        "latency_p50_s": statistics.median(latencies), "latency_max_s": max(latencies),
        "rtf": sum(latencies) / audio_s,
    }


def bench_asr_beside_tts(model: str, device: str, renders: int, spin: bool, threads: int,
                         slices: list[AudioSlice]) -> dict[str, Any]:
    """Recognition latency (batch 1, slices in order) while `renders` threads render speech back to back
    through one voice whose ONNX Runtime pool has `threads` threads (0: one a core)."""
    from duo.audio.tts import PiperTts

    recognizer = Recognizer(load_whisper(model, device))
    transcribe_batch([(StreamTranscriber(recognizer), slices[0])])  # warm-up
    voice = PiperTts(spin=spin, threads=threads)
    voice.synthesize("Warm up.")
    stop, rendered_s = threading.Event(), [0.0] * renders

    def speak(i: int) -> None:
        while not stop.is_set():
            audio, rate = voice.synthesize(STORY)
            rendered_s[i] += audio.size / rate

    workers = [threading.Thread(target=speak, args=(i,), daemon=True) for i in range(renders)]
    for worker in workers:
        worker.start()
    stream, latencies = StreamTranscriber(recognizer), []
    t_start = time.perf_counter()
    for piece in slices:
        sync(device)
        t0 = time.perf_counter()
        transcribe_batch([(stream, piece)])
        sync(device)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    stop.set()
    for worker in workers:
        worker.join()
    return {"what": "asr_beside_tts", "model": model, "device": device, "renders": renders, "spin": spin,
            "tts_threads": threads or os.cpu_count(),
            "slices": len(slices), "latency_p50_s": statistics.median(latencies), "latency_max_s": max(latencies),
            "speech_rendered_s_per_s": sum(rendered_s) / elapsed}


def bench_vad(audio: np.ndarray, streams: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    vad = SileroVad.shared()
    x = audio[: audio.size // FRAME * FRAME]
    frames = x.reshape(-1, FRAME)
    states = [VadState() for _ in range(streams)]
    vad.batch_probs(np.stack([frames[0]] * streams), states)  # warm-up
    t0 = time.perf_counter()
    for frame in frames:
        vad.batch_probs(np.stack([frame] * streams), states)
    seconds = time.perf_counter() - t0
    audio_s = x.size / SAMPLE_RATE
    return {"what": "vad", "streams": streams, "threads": threads,
            "ms_per_audio_s_per_stream": 1000 * seconds / audio_s / streams,
            "ms_per_frame_call": 1000 * seconds / len(frames)}


def bench_tts(backend: str) -> dict[str, Any] | None:
    from duo.audio.errors import SynthesisError
    from duo.audio.tts import OUTPUT_RATE, Speaker, load_voice

    try:
        voice = load_voice(backend)
    except SynthesisError as exc:
        return {"what": "tts", "backend": backend, "skipped": str(exc)}
    speaker = Speaker(voice)
    list(speaker.speak("Warm up."))
    t0 = time.perf_counter()
    stream = speaker.speak(REPLY)
    first = next(stream)
    first_s = time.perf_counter() - t0
    total = len(first) + sum(len(c) for c in stream)
    elapsed = time.perf_counter() - t0
    return {"what": "tts", "backend": voice.name, "first_chunk_s": first_s,
            "rtf": elapsed / (total / 2 / OUTPUT_RATE)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="slice rounds timed at batch > 1")
    parser.add_argument("--vad-threads", nargs="+", type=int, default=None,
                        help="torch CPU threads for the VAD rows (default: torch's own, then 1, as a server "
                             "beside a GPU model runs it)")
    parser.add_argument("--beside-tts", nargs="*", type=int, default=[],
                        help="recognition again beside this many Piper renders each (spinning and resting "
                             "threads), e.g. 0 2 8")
    parser.add_argument("--tts-threads", nargs="+", type=int, default=[0],
                        help="the voice's ONNX Runtime threads for --beside-tts (0: one a core, onnxruntime's)")
    parser.add_argument("--out", default=None, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = pick_device(args.device)
    audio = call_audio()
    slices = call_slices(audio)
    results: list[dict[str, Any]] = [{"what": "machine", "device": device, "name": device_name(device),
                                      "load_average_1min": os.getloadavg()[0]}]
    print(json.dumps(results[0]), flush=True)
    for model in args.models:
        for batch in args.batch:
            results.append(bench_asr(model, device, batch, args.rounds, slices))
            print(json.dumps(results[-1]), flush=True)
    for renders in args.beside_tts:
        for threads in args.tts_threads if renders else [0]:
            for spin in (True, False) if renders else (False,):
                results.append(bench_asr_beside_tts(args.models[0], device, renders, spin, threads, slices))
                print(json.dumps(results[-1]), flush=True)
    import torch

    for threads in args.vad_threads or sorted({torch.get_num_threads(), 1}, reverse=True):
        for streams in (1, 16):
            results.append(bench_vad(audio, streams, threads))
            print(json.dumps(results[-1]), flush=True)
    for backend in ("piper", "espeak-ng"):
        row = bench_tts(backend)
        if row:
            results.append(row)
            print(json.dumps(row), flush=True)
    results.append({"what": "load", "load_average_1min_at_end": os.getloadavg()[0]})
    print(json.dumps(results[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\naudio bench on {results[0]['name']} [{device}]")
    print(f"{'measurement':<34}{'p50 / value':>14}{'max':>10}{'RTF':>8}")
    for r in results[1:]:
        if r["what"] == "load":
            print(f"(1-min load average {results[0]['load_average_1min']:.2f} at start, "
                  f"{r['load_average_1min_at_end']:.2f} at end: other work on the machine slows every row)")
        elif r["what"] == "asr":
            label = f"asr {r['model']} batch {r['batch']} ({r['slices']} slices)"
            print(f"{label:<34}{r['latency_p50_s']:>12.3f} s{r['latency_max_s']:>8.3f} s{r['rtf']:>8.3f}")
        elif r["what"] == "asr_beside_tts":
            label = (f"asr {r['model']} beside {r['renders']} TTS"
                     + (f" {r['tts_threads']} thr." if r["renders"] else "") + (" (spin)" if r["spin"] else ""))
            print(f"{label:<34}{r['latency_p50_s']:>12.3f} s{r['latency_max_s']:>8.3f} s"
                  f"   speech {r['speech_rendered_s_per_s']:.1f} s/s")
        elif r["what"] == "vad":
            label = f"vad, {r['streams']} stream(s) batched, {r['threads']} thr."
            print(f"{label:<34}{r['ms_per_audio_s_per_stream']:>9.2f} ms/s")
        elif "skipped" in r:
            print(f"{'tts ' + r['backend']:<34}{'skipped':>14}")
        else:
            print(f"{'tts ' + r['backend'] + ' first chunk':<34}{r['first_chunk_s']:>12.3f} s{'':>10}{r['rtf']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speech output's share of the reply latency: a reply's first text delta to its first audio chunk sent.

Workload: typical two-sentence replies streamed into a session's voice (`duo.server.speech_out.SpeechOut`, the
server's own path: splitter, synthesis in a worker thread, encoding, the event sent) one word per `--word-ms`
(50 ms: the engine's real-time target of 20 tokens/s, about a word per token), for each `--first-clause-words`
(0: speech starts at the first whole sentence; 4: at the first clause), `--first-piece-words` (0: no cap; 6: a
first sentence with no clause by then starts from its first six words) and voice. Each reply runs `--runs`
times after a warm-up; the medians are printed as JSON lines, then a table, with the silence a listener would
hear inside each reply (its chunks played as they come, as the demo page does, behind a 60 ms lead): starting
sooner must not make a reply choppy.

    python -m duo.bench.first_audio [--backends piper espeak-ng] [--first-clause-words 0 4]
        [--first-piece-words 0 6] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
from typing import Any

from duo.audio.decode import WIRE_RATE as OUTPUT_RATE
from duo.server import server_events as se
from duo.server.speech import SpeechServices
from duo.server.speech_out import SpeechOut

REPLIES = (
    "The capital of France is Paris, which is also its largest city. It has been the capital for more than a "
    "thousand years.",
    "If you leave at eight, you should arrive well before noon. Traffic is usually light on Sundays.",
    "Python is a programming language that is easy to learn and it is used for many things. Would you like an "
    "example?",
    "Sure, I have set a timer for ten minutes. I will let you know when it rings.",  # no early clause to cut
    "The moon is approximately 384,400 kilometers (238,855 miles) away from Earth on average. It moves slowly "
    "away from us.",  # a long opening, no clause in it
)


LEAD_S = 0.06  # the demo page's playback lead (static/js/player.js)


async def speak(services: SpeechServices, reply: str, word_s: float) -> tuple[float, float]:
    """(seconds from the first word fed to the first audio delta sent, seconds of silence a listener hears
    inside the reply: playback as the demo page does it, each chunk when it has come and the last has ended)."""
    chunks: list[tuple[float, float]] = []  # (arrival, seconds of audio)
    done = asyncio.Event()

    def send(event: se.ServerEvent) -> None:
        if isinstance(event, se.OutputAudioDelta):
            chunks.append((time.monotonic(), len(base64.b64decode(event.delta)) / 2 / OUTPUT_RATE))
        elif isinstance(event, se.OutputAudioDone):
            done.set()

    voice = SpeechOut(services, send, lambda _: None)
    playback = await voice.start("resp_bench", "item_bench")
    assert playback is not None
    for i, word in enumerate(reply.split(" ")):
        voice.feed(playback, (" " if i else "") + word)
        await asyncio.sleep(word_s)
    voice.end(playback)
    await done.wait()
    voice.stop()
    assert playback.first_audio_s is not None
    silent, end = 0.0, chunks[0][0] + LEAD_S
    for arrival, seconds in chunks:
        if arrival + 0.01 > end:  # the queue ran dry: an underrun, the chunk plays a lead after it came
            silent, end = silent + arrival + LEAD_S - end, arrival + LEAD_S
        end += seconds
    return playback.first_audio_s, silent


async def bench(backend: str, words: int, piece_words: int, runs: int, word_s: float) -> dict[str, Any]:
    services = SpeechServices(tts_backend=backend, first_clause_words=words, first_piece_words=piece_words)
    speaker = await services.speaker()
    await speak(services, "Warm up, the voice and its thread.", 0)
    first, silent = [], []
    for reply in REPLIES:
        timed = [await speak(services, reply, word_s) for _ in range(runs)]
        first.append(statistics.median(t[0] for t in timed))
        silent.append(statistics.median(t[1] for t in timed))
    return {"what": "first_audio", "voice": speaker.voice.name, "first_clause_words": words,
            "first_piece_words": piece_words, "runs": runs,
            "word_ms": word_s * 1000, "median_s": statistics.median(first), "per_reply_s": first,
            "silence_within_s": silent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["piper", "espeak-ng"])
    parser.add_argument("--first-clause-words", nargs="+", type=int, default=[0, 4])
    parser.add_argument("--first-piece-words", nargs="+", type=int, default=[0, 6])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--word-ms", type=float, default=50.0, help="gap between streamed words")
    args = parser.parse_args(argv)
    print(json.dumps({"what": "machine", "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}))
    rows = []
    for backend in args.backends:
        for words in args.first_clause_words:
            for piece_words in args.first_piece_words:
                rows.append(asyncio.run(bench(backend, words, piece_words, args.runs, args.word_ms / 1000)))
                print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"what": "machine_end", "load_average_1min": os.getloadavg()[0]}))
    print(f"\n{'voice':<26}{'clause words':>13}{'piece words':>12}{'median':>10}   per reply (silence inside it)")
    for r in rows:
        print(f"{r['voice']:<26}{r['first_clause_words']:>13}{r['first_piece_words']:>12}{r['median_s']:>9.3f}s   "
              + " ".join(f"{a:.3f} ({b:.2f})" for a, b in zip(r["per_reply_s"], r["silence_within_s"], strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

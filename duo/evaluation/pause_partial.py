"""The pause's partial against the final slice, on the shipped duplex scenarios' queries and interruptions.

Each part of a scenario with a query or an interruption goes through the slicer as a live stream with
partials (one taken as each pause begins), its slices recognized in order: a final slice its pause's partial
heard whole takes that reading (`StreamTranscriber.reuse`). A second stream decodes the same slices without
partials. Reported: how much later than the audio the VAD puts the end of speech (stream time), how many
final slices took the partial's reading, and how many of those read other words than their own decode.
Prints one JSON object per utterance, then the summary.

    python -m duo.evaluation.pause_partial [--model tiny.en] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from duo.audio.asr import Recognizer
from duo.audio.decode import SAMPLE_RATE
from duo.audio.events import AudioSlice, SpeechStopped
from duo.audio.slicer import Slicer, SlicerConfig
from duo.audio.textnorm import normalize
from duo.audio.transcriber import StreamTranscriber
from duo.audio.whisper_model import load_whisper

from .render import AudioPart, render
from .scenario import load_scenarios

CHUNK = 640  # 40 ms, as the evaluation client streams


def hear(part: AudioPart, recognizer: Recognizer) -> list[dict]:
    """Every utterance of the part that ends a query or an interruption, with partials and without."""
    slicer = Slicer(SlicerConfig(pause_s=0.5))
    live, plain = StreamTranscriber(recognizer), StreamTranscriber(recognizer)
    x = np.concatenate([part.samples, np.zeros(SAMPLE_RATE, np.float32)])
    stops: dict[int, float] = {}
    finals: list[tuple[AudioSlice, str, str]] = []
    for i in range(0, x.size, CHUNK):
        for e in slicer.push(x[i : i + CHUNK]):
            if isinstance(e, SpeechStopped):
                stops[e.utterance_id] = e.time_s
            elif isinstance(e, AudioSlice):
                with_partial, alone = live.transcribe(e), plain.transcribe(e)
                if e.final:
                    finals.append((e, with_partial.utterance_text, alone.utterance_text))
        if (piece := slicer.partial(10.0)) is not None:
            live.transcribe(piece)
    rows = []
    for seg in (s for s in part.segments if s.role in ("query", "interrupt") and not s.layer):
        after = [(stops[f.utterance_id], f, a, b) for f, a, b in finals
                 if f.utterance_id in stops and stops[f.utterance_id] >= seg.end - 0.3]
        if after:
            stop, final, read, decoded = min(after, key=lambda r: r[0])
            rows.append({"role": seg.role, "vad_lag_ms": round((stop - seg.end) * 1000), "reused": final.heard_s
                         is not None, "same_words": normalize(read) == normalize(decoded), "text": decoded})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    recognizer = Recognizer(load_whisper(args.model, args.device))
    rows = []
    for scenario in load_scenarios():
        for part in render(scenario):
            if isinstance(part, AudioPart):
                for row in hear(part, recognizer):
                    rows.append({"scenario": scenario.id, **row})
                    print(json.dumps(rows[-1]))
    lags = [r["vad_lag_ms"] for r in rows]
    reused = [r for r in rows if r["reused"]]
    p10, p50, p90 = (float(np.percentile(lags, q)) for q in (10, 50, 90))
    other = sum(not r["same_words"] for r in reused)
    print(json.dumps({"bench": "pause_partial", "model": args.model, "utterances": len(rows),
                      "vad_lag_ms_p10_p50_p90": [p10, p50, p90], "vad_lag_ms_mean": round(statistics.mean(lags)),
                      "finals_reused": len(reused), "reused_with_other_words": other}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the shipped scenario set: `python -m duo.evaluation.build_scenarios [--out PATH]`.

Queries are written here for the evaluation (not drawn from the training templates). Speech not meant for the
assistant comes from real recordings (pyannote's telephone call, alsa-utils' voice clips and noise) and from
news sentences and Debian fortunes of the *test* split of the training sources, so the shipped adapter never
trained on them. Voices rotate over espeak-ng, flite and Piper. The output stores only the timelines; the
audio is rendered when a scenario runs. The build is deterministic.
"""

from __future__ import annotations

import argparse
import random
import sys
from itertools import cycle
from pathlib import Path
from typing import Any

from .scenario import Scenario, dump, parse_scenario, shipped_scenarios

SEED = 9
CALL = "pyannote:audio/sample/sample.wav"
# Turns of the call (from its word-timed transcript), cut at pauses between speakers.
CALL_SPANS = [(6.6, 12.6), (12.5, 17.8), (17.7, 21.6), (21.8, 28.5), (14.4, 21.6), (6.6, 10.9)]
ALSA_VOICES = ["Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left",
               "Side_Right"]
NOISE = "alsa:Noise.wav"
VOICES = ["espeak-ng:en-us", "flite:slt", "piper:joe", "flite:rms", "espeak-ng:en-gb", "flite:awb",
          "espeak-ng:en-us+f3", "flite:kal"]

QUERIES = [
    "what is the capital of france",
    "set a timer for ten minutes",
    "how far away is the moon",
    "what's the weather going to be like tomorrow",
    "can you recommend a good book to read",
    "turn off the lights in the kitchen please",
    "how do I boil an egg",
    "what time is it in tokyo right now",
    "tell me a joke",
    "who wrote romeo and juliet",
    "remind me to call my mother at six",
    "what is the tallest mountain in the world",
]
# (query, noise under it, gain of the bed)
OVER = [("how many days are there in a leap year", NOISE, -14.0),
        ("play some relaxing jazz music", f"{CALL}@14.4-21.6", -12.0)]
# unfinished query | its end, with the pause between them
SPLIT = [("set a timer for", "twenty minutes", 1.5),
         ("what's the weather like in", "paris tomorrow", 1.5),
         ("can you tell me how to get to", "the train station", 1.8),
         ("remind me to", "buy milk tomorrow morning", 1.5),
         ("what is the square root of", "sixty four", 2.0),
         ("play the latest album by", "the rolling stones", 1.5),
         ("how many ounces are there in", "a pound", 1.8),
         ("translate good morning into", "spanish", 1.5)]
LONG = ["tell me a long story about a dragon",
        "explain in detail how airplanes fly",
        "tell me about the history of the roman empire",
        "describe the solar system planet by planet",
        "give me a detailed recipe for lasagna",
        "tell me everything you know about whales"]
INTERRUPTIONS = ["stop, what time is it",
                 "wait, actually, what's the weather today",
                 "hold on, set a timer for five minutes",
                 "sorry, can you turn on the lights",
                 "never mind, what is two plus two",
                 "stop, tell me a joke instead"]
DIALOGUE = [("mark, are you coming to the meeting at three", "yeah, I'll be there right after lunch"),
            ("did you remember to feed the dog this morning", "no, I thought you did it before work")]
SAFE_FORTUNES = ("fortunes", "wisdom", "science", "platitudes", "work", "literature")


def _call(span: tuple[float, float], role: str = "background", **extra: Any) -> dict[str, Any]:
    return {"play": CALL, "start": span[0], "end": span[1], "role": role, **extra}


def _layer(ref: str, gain: float) -> dict[str, Any]:
    if "@" in ref:
        path, span = ref.split("@")
        a, b = (float(x) for x in span.split("-"))
        return {"play": path, "start": a, "end": b, "gain_db": gain}
    return {"play": ref, "gain_db": gain}


def held_out_text(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    """News (two sentences of each of 8 articles) and fortunes from the test split of the training sources."""
    from duo.training.data import BuildConfig, split_of
    from duo.training.sources import fortunes, news_sentences

    cfg = BuildConfig()
    by_article: dict[str, list[str]] = {}
    for item in news_sentences(min_words=8, max_words=22):
        if split_of(item.group, cfg) == "test":
            by_article.setdefault(item.group, []).append(item.text)
    articles = sorted(g for g, s in by_article.items() if len(s) >= 2)
    news = [by_article[g][:2] for g in rng.sample(articles, 8)]
    quotes = sorted({i.text for i in fortunes(min_words=10, max_words=24)
                     if split_of(i.group, cfg) == "test" and i.group.split(":")[1] in SAFE_FORTUNES
                     and '"' not in i.text})
    return news, rng.sample(quotes, 4)


def build() -> list[Scenario]:
    rng = random.Random(SEED)
    voices = cycle(VOICES)
    news, quotes = held_out_text(rng)
    out: list[dict[str, Any]] = []

    def add(sid: str, expect: str, timeline: list[dict[str, Any]], description: str, tags: list[str],
            **extra: Any) -> None:
        out.append({"id": sid, "expect": expect, "timeline": timeline, "description": description, "tags": tags,
                    **extra})

    # respond: a query, synthesized or recorded, alone, over noise or talk, or after background speech
    for n, text in enumerate(QUERIES):
        voice = next(voices)
        add(f"respond-{n:02d}", "respond", [{"silence": 0.5}, {"say": text, "voice": voice, "role": "query"}],
            f"a query ({voice})", ["synth"])
    add("respond-recorded", "respond",
        [{"silence": 0.5}, {"play": "amfm_decompy:sample.wav", "role": "query"}],
        "a real recorded question: 'How do we define it?'", ["recording"])
    for n, (text, bed, gain) in enumerate(OVER):
        add(f"respond-over-{n}", "respond",
            [{"silence": 0.5}, {"say": text, "voice": next(voices), "role": "query", "over": [_layer(bed, gain)]}],
            f"a query over {'noise' if bed == NOISE else 'people talking'} at {gain:g} dB", ["mix"])
    add("respond-after-call", "respond",
        [_call(CALL_SPANS[2]), {"silence": 1.0}, {"say": "what's the population of canada", "voice": "piper:joe",
                                                  "role": "query"}],
        "people talking on the phone, then a query", ["mix", "recording"])
    add("respond-after-news", "respond",
        [{"say": news[0][0], "voice": "espeak-ng:en-gb", "role": "background", "gain_db": -6},
         {"silence": 1.0}, {"say": "what's on my calendar today", "voice": "flite:slt", "role": "query"}],
        "the radio reads the news, then a query", ["mix", "synth"])

    # no_response: speech around the assistant, never to it
    for n, span in enumerate(CALL_SPANS[:4]):
        add(f"ignore-call-{n}", "no_response", [{"silence": 0.3}, _call(span)],
            f"a real telephone call, {span[0]:g}-{span[1]:g} s", ["recording"])
    for n, text in enumerate(news[1:4]):
        add(f"ignore-news-{n}", "no_response",
            [{"silence": 0.3}, {"say": " ".join(text), "voice": ["espeak-ng:en-gb", "flite:awb", "piper:joe"][n],
                                "role": "background"}], "news read aloud", ["synth"])
    for n, text in enumerate(quotes[:2]):
        add(f"ignore-quote-{n}", "no_response",
            [{"silence": 0.3}, {"say": text, "voice": ["flite:rms", "espeak-ng:en-us"][n], "role": "background"}],
            "a quotation read aloud", ["synth"])
    add("ignore-alsa-voices", "no_response",
        [{"silence": 0.3}] + [x for v in ALSA_VOICES[:4] for x in ({"play": f"alsa:{v}.wav", "role": "background"},
                                                                  {"silence": 0.6})],
        "a man reading out speaker channel names (alsa-utils' test clips)", ["recording"])
    add("ignore-noise", "no_response", [{"silence": 0.3}, {"play": NOISE, "role": "background"}],
        "noise only (alsa-utils' Noise.wav)", ["recording"])
    for n, (a, b) in enumerate(DIALOGUE):
        add(f"ignore-dialogue-{n}", "no_response",
            [{"silence": 0.3}, {"say": a, "voice": "espeak-ng:en-us", "role": "background"}, {"silence": 0.4},
             {"say": b, "voice": "flite:slt", "role": "background"}],
            "two people talking to each other", ["synth"])
    add("ignore-news-over-noise", "no_response",
        [{"silence": 0.3}, {"say": news[4][0], "voice": "flite:kal", "role": "background",
                            "over": [_layer(NOISE, -14.0)]}], "news over a noisy room", ["mix", "synth"])

    # wait: an unfinished query, a pause, and its end
    for n, (head, tail, pause) in enumerate(SPLIT):
        voice = next(voices)
        item: dict[str, Any] = {"say": head, "voice": voice, "role": "query"}
        if n == len(SPLIT) - 1:
            item["over"] = [_layer(NOISE, -16.0)]
        add(f"wait-{n:02d}", "wait",
            [{"silence": 0.5}, item, {"silence": pause, "role": "pause"},
             {"say": tail, "voice": voice, "role": "query"}],
            f"'{head} …' {pause:g} s pause '… {tail}'", ["synth"] + (["mix"] if "over" in item else []))

    # interrupt: a long answer, cut by a new query
    for n, (ask, cut) in enumerate(zip(LONG, INTERRUPTIONS, strict=True)):
        add(f"interrupt-{n:02d}", "interrupt",
            [{"silence": 0.5}, {"say": ask, "voice": VOICES[n % 3], "role": "query"},
             {"wait_for": "reply", "delay": 1.0}, {"say": cut, "voice": VOICES[(n + 1) % 3], "role": "interrupt"}],
            "a long answer cut by a new query", ["synth"], max_output_tokens=64)

    # no_interrupt: a long answer while people talk nearby
    backgrounds = [_call(CALL_SPANS[4]), _call(CALL_SPANS[5]),
                   {"say": news[5][0], "voice": "espeak-ng:en-gb", "role": "background"},
                   {"say": news[6][0], "voice": "flite:awb", "role": "background"},
                   {"say": quotes[2], "voice": "flite:rms", "role": "background"},
                   {"play": "alsa:Rear_Center.wav", "role": "background"}]
    kinds = ["a telephone call", "a telephone call", "news", "news", "a quotation", "a man saying 'rear center'"]
    for n, (ask, bg) in enumerate(zip(LONG, backgrounds, strict=True)):
        add(f"keep-talking-{n:02d}", "no_interrupt",
            [{"silence": 0.5}, {"say": ask, "voice": VOICES[(n + 2) % 3], "role": "query"},
             {"wait_for": "reply", "delay": 1.0}, bg],
            f"a long answer while {kinds[n]} plays nearby", ["recording" if "play" in bg else "synth"],
            max_output_tokens=64)
    return [parse_scenario(s) for s in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m duo.evaluation.build_scenarios", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="output file (default: the shipped set)")
    args = parser.parse_args(argv)
    scenarios = build()
    path = args.out or shipped_scenarios()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dump(s) + "\n" for s in scenarios))
    counts: dict[str, int] = {}
    for s in scenarios:
        counts[s.expect] = counts.get(s.expect, 0) + 1
    print(f"{len(scenarios)} scenarios -> {path} ({path.stat().st_size} bytes): "
          + ", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

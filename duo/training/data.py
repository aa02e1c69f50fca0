"""`duo data build`: sources -> spoken forms -> split by source item -> conversations + eval files + stats.

Output folder:
  train.jsonl, dev.jsonl, test.jsonl   one conversation per line: {"events": [...]} (text, labels, replies)
  dev.eval.jsonl, test.eval.jsonl      decision points in `duo eval`'s format
  stats.json                           counts per split, label and source
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conversations import by_source, conversation, eval_rows, openings, speak, stable_unit
from .examples import Event
from .replies import MAX_NEW_TOKENS, Context, ReplyCache
from .sources import IGNORE, LABELS, PROCESS, Item, load_all

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    asr_ratio: float = 0.7  # share of items in recognizer form (lower case, no punctuation, numbers as words)
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    train_decisions: int = 10_000  # state decisions in the training conversations (paper: ~10K samples)
    eval_decisions: int = 1_000  # in dev / test conversations (for held-out loss)
    per_template: int = 12
    max_events: int = 6
    max_new_tokens: int = MAX_NEW_TOKENS


class MissingReplies(RuntimeError):
    """Some queries have no cached reply for this model and generation was not allowed."""


def split_of(group: str, config: BuildConfig) -> str:
    u = stable_unit(config.seed, "split", group)
    return "test" if u < config.test_fraction else "dev" if u < config.test_fraction + config.dev_fraction \
        else "train"


def split_items(items: list[Item], config: BuildConfig) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for item in items:
        out[split_of(item.group, config)].append(item)
    return out


def decisions(events: list[Event]) -> Counter[str]:
    return Counter(label for e in events for label in e.labels if label is not None)


def build(out_dir: Path, config: BuildConfig, cache: ReplyCache, model: str, instructions: str,
          fill_missing: Callable[[list[tuple[str, Context]]], None] | None = None) -> dict[str, Any]:
    """Write the data set; returns its statistics. `fill_missing([(query, earlier turns)])` generates
    absent replies."""
    items = load_all(config.seed, config.per_template)
    splits = split_items(items, config)
    spoken = {s: [speak(i, config.seed, config.asr_ratio) for i in its] for s, its in splits.items()}
    queries = {s: [x for x in sp if x.item.label == PROCESS and x.text] for s, sp in spoken.items()}
    noise = {s: by_source([x for x in sp if x.item.label == IGNORE and x.text]) for s, sp in spoken.items()}

    def reply(text: str, context: Context = ()) -> str:
        found = cache.get(model, instructions, text, config.max_new_tokens, context)
        if found is None:
            raise KeyError((text, context))
        return found

    # Replies without earlier turns first: a follow-up's prompt holds its lead's reply.
    everything = [q for qs in queries.values() for q in qs]
    for phase in (lambda: {(q.text, ()) for q in everything if q.lead is None},
                  lambda: {(q.text, q.context(reply)) for q in everything if q.lead is not None}):
        needed = sorted(phase())
        missing = [p for p in needed if cache.get(model, instructions, p[0], config.max_new_tokens, p[1]) is None]
        if missing and fill_missing is not None:
            fill_missing(missing)
            missing = [p for p in needed if cache.get(model, instructions, p[0], config.max_new_tokens, p[1]) is None]
        if missing:
            raise MissingReplies(
                f"{len(missing)} of {len(needed)} queries have no cached reply for model {model!r} in {cache.path} "
                "(run without --offline to generate them with the model)"
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"config": config.__dict__, "model": model, "splits": {}}
    for split in SPLITS:
        rng = random.Random(f"{config.seed}:conversations:{split}")
        target = config.train_decisions if split == "train" else config.eval_decisions
        convs: list[list[Event]] = []
        counts: Counter[str] = Counter()
        starts = openings(queries[split])
        while sum(counts.values()) < target:
            events = conversation(queries[split], noise[split], reply, rng, config.max_events, starts=starts)
            convs.append(events)
            counts += decisions(events)
        _write_jsonl(out_dir / f"{split}.jsonl", [{"events": [e.to_json() for e in c]} for c in convs])
        entry: dict[str, Any] = {
            "conversations": len(convs),
            "events": sum(map(len, convs)),
            "barge_ins": sum(e.kind == "turn" and e.at is not None for c in convs for e in c),
            "ignored_during_reply": sum(e.kind == "noise" and e.at is not None for c in convs for e in c),
            "decisions": {label: counts[label] for label in LABELS},
            "items": dict(Counter(i.source for i in splits[split])),
            "groups": len({i.group for i in splits[split]}),
            "asr_form": sum(x.text != " ".join(x.item.text.replace("|", " ").split()) for x in spoken[split]),
        }
        if split != "train":
            rows = eval_rows(queries[split], noise[split], reply, random.Random(f"{config.seed}:eval:{split}"))
            _write_jsonl(out_dir / f"{split}.eval.jsonl", rows)
            entry["eval_rows"] = dict(Counter(str(r["label"]) for r in rows))
        stats["splits"][split] = entry
    groups = [{i.group for i in splits[s]} for s in SPLITS]
    overlap = (groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2])
    if overlap:
        raise AssertionError(f"source items in two splits: {sorted(overlap)[:5]}")
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def load_conversations(path: Path) -> list[list[Event]]:
    convs = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                convs.append([Event.from_json(e) for e in json.loads(line)["events"]])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a conversation line ({exc})") from exc
    return convs


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"{'split':6} {'convs':>6} {'events':>7} {'process':>8} {'incompl':>8} {'ignore':>7} "
             f"{'barge':>6} {'groups':>6}  items"]
    for split, s in stats["splits"].items():
        d = s["decisions"]
        lines.append(f"{split:6} {s['conversations']:6d} {s['events']:7d} {d['process']:8d} {d['incomplete']:8d} "
                     f"{d['ignore']:7d} {s['barge_ins']:6d} {s['groups']:6d}  {s['items']}")
        if "eval_rows" in s:
            lines.append(f"{'':6} eval rows: {s['eval_rows']}")
    return "\n".join(lines)

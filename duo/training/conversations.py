"""Conversations in text: queries cut into speech slices, ignored speech, replies, barge-ins (paper Fig. 7).

Everything here is text and labels; tokens come later from the backbone's framing (`examples.encode`), so
one build serves any model whose replies are cached. Randomness comes only from the `random.Random`
passed in, so a build is a function of its seed. Replies come from `replies(text, context)`, `context` being
the earlier turns a follow-up's reply was written after (user, assistant, ...; empty for any other query).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from .examples import Event
from .normalize import asr
from .sources import IGNORE, INCOMPLETE, PROCESS, Item, natural_ends

Replies = Callable[[str, tuple[str, ...]], str]

# Words per slice: the paper's 2 s slices hold 4-6 words; a pause closes some early.
SLICE_WORDS = (2, 3, 4, 4, 5, 5, 5, 6, 6, 7)
MIN_MISSING = 2  # an `incomplete` truncation leaves at least this many words out
# A first slice holding the whole query (a short one closed by a pause, or a text client's message) or
# everything up to a cut (a long slice, up to 4 s): judged in one piece, as `duo eval` rows are.
P_WHOLE, P_LONG_PREFIX = 0.2, 0.15
# Recognizers punctuate what they hear as a sentence: a clean-form slice cut mid-sentence often comes out
# as "What is the square root of?". Its state must come from the words, not from the mark.
P_CLOSING_MARK = 0.5
CLOSING_MARKS = (".", ".", "?", "?", "...", ",")
# Slices are cut by time, so a query's last word often arrives alone ("tell me a story about a" + "dragon"):
# that lone word ends the request.
P_LAST_WORD_ALONE = 0.15
# Ignored speech ends too: after the engine drops an input, the next slice may hold only the last words of
# what was overheard ("the end of the road"), a fragment that must stay `ignore`, not wait as `incomplete`.
# Never one word: a lone "the" or "book" is as likely the start of a request.
P_TAIL, P_STRETCH, TAIL_WORDS = 0.15, 0.5, (2, 4)
# The first words of any speech could begin a request ("can you" ... "chop the onions" or "tell me the time"):
# a slice holding no more than these of an utterance's opening is not judged, and no fragment is only them.
OPENING_WORDS = 3
# A request's opening heard alone ("set", "can you"): a pause after the first words, or a partial transcript
# of the words said so far, which the input channel sees every few hundred milliseconds. It must wait.
P_OPENING = 0.2

Openings = frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class Spoken:
    """An item as the input channel hears it: words (each possibly ASR-normalized) and natural ends."""

    item: Item
    words: list[str]  # one entry per written word; ASR may spell it as several words or drop it ("-")
    ends: frozenset[int]  # word counts after which the utterance could end naturally
    clean: bool = False  # written as is (cased, punctuated), not in the recognizer's plain form
    lead: Spoken | None = None  # a follow-up's earlier request

    @property
    def text(self) -> str:
        return " ".join(w for w in self.words if w)

    def context(self, replies: Replies) -> tuple[str, ...]:
        """The turns this query's reply follows: its lead and the lead's reply, or none."""
        return () if self.lead is None else (self.lead.text, replies(self.lead.text, ()))

    def reply(self, replies: Replies) -> str:
        return replies(self.text, self.context(replies))


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts` (not by Python's per-process hash seed)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def speak(item: Item, seed: int, asr_ratio: float) -> Spoken:
    """The item's fixed spoken form: ASR-style for a share `asr_ratio` of items, clean otherwise."""
    text, ends = natural_ends(item.text)
    words = text.split()
    clean = stable_unit(seed, "asr", item.group, item.text) >= asr_ratio
    if not clean:
        words = [asr(w) for w in words]
    lead = speak(item.lead, seed, asr_ratio) if item.lead else None
    return Spoken(item, words, frozenset(ends), clean, lead)


def plain_words(text: str) -> tuple[str, ...]:
    """Words without case or punctuation: how a slice compares with a request's opening."""
    return tuple(w for w in (w.strip(".,?!;:\"'").lower() for w in text.split()) if w)


def openings(queries: list[Spoken]) -> Openings:
    """The first 1..`OPENING_WORDS` words of every request: speech that starts with them could be one."""
    return frozenset(plain_words(q.text)[:k] for q in queries for k in range(1, OPENING_WORDS + 1))


def cut_points(spoken: Spoken) -> list[int]:
    """Word counts where the query may be cut as `incomplete`: not at a natural end, >= 2 words missing."""
    n = len(spoken.words)
    return [k for k in range(1, n - MIN_MISSING + 1)
            if k not in spoken.ends and spoken.words[k - 1] and any(spoken.words[k:])]


def slice_up(words: list[str], rng: random.Random, first: int | None = None) -> list[tuple[int, str]]:
    """Consecutive slices as (words consumed so far, slice text); empty slices are merged forward.

    `first`: the first slice's length in words (default: drawn like the others).
    """
    out: list[tuple[int, str]] = []
    i, pending = 0, ""
    while i < len(words):
        j = min(len(words), i + (first if first and i == 0 else rng.choice(SLICE_WORDS)))
        pending = " ".join(w for w in [pending, *words[i:j]] if w)
        if pending:
            out.append((j, pending))
            pending = ""
        i = j
    return out


def last_word_alone(slices: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The final slice's last word split off as a slice of its own (no decision before it: a cut is never
    made with fewer than `MIN_MISSING` words missing)."""
    consumed, text = slices[-1]
    head, _, last = text.rpartition(" ")
    return slices if not head else [*slices[:-1], (consumed - 1, head), (consumed, last)]


def query_event(spoken: Spoken, reply: str, rng: random.Random, at: float | None) -> Event:
    """A query spoken in slices: `incomplete` where a cut is allowed, `process` at its end."""
    allowed = set(cut_points(spoken))
    short = sorted(k for k in allowed if k <= OPENING_WORDS)
    draw, first = rng.random(), None
    if draw < P_WHOLE:
        first = len(spoken.words)
    elif draw < P_WHOLE + P_LONG_PREFIX and allowed:
        first = rng.choice(sorted(allowed))
    elif draw < P_WHOLE + P_LONG_PREFIX + P_OPENING and short:
        first = rng.choice(short)
    slices = slice_up(spoken.words, rng, first)
    if first is None and rng.random() < P_LAST_WORD_ALONE:
        slices = last_word_alone(slices)
    labels: list[str | None] = [INCOMPLETE if k in allowed else None for k, _ in slices[:-1]]
    texts = [s for _, s in slices]
    if spoken.clean:
        texts = [t + rng.choice(CLOSING_MARKS) if label == INCOMPLETE and t[-1].isalnum()
                 and rng.random() < P_CLOSING_MARK else t for t, label in zip(texts, [*labels, None], strict=True)]
    return Event("turn", texts, [*labels, PROCESS], reply=reply, at=at)


def fragment(spoken: Spoken, rng: random.Random) -> list[str]:
    """Ignored speech as heard: the whole utterance, its last few words, or a stretch starting anywhere."""
    words = [w for w in spoken.words if w]
    draw = rng.random()
    if len(words) > TAIL_WORDS[1] and draw < P_TAIL:
        return words[-rng.randint(*TAIL_WORDS):]
    if len(words) > OPENING_WORDS and draw < P_TAIL + P_STRETCH:
        start = rng.randrange(0, len(words) - 2)
        low = 2 if start else OPENING_WORDS + 1  # a stretch from the first word holds more than the opening
        words = words[start : start + rng.randint(low, max(low, min(14, len(words) - start)))]
    return words


def noise_event(spoken: Spoken, rng: random.Random, at: float | None, starts: Openings = frozenset()) -> Event:
    """Ignored speech in 1-3 slices, each `ignore`, except a slice that could as well open a request, which is
    not judged: a first slice holding only the utterance's opening words (`OPENING_WORDS`), or any slice whose
    words are a request's opening (`starts`: "can you" out of "Lisa can you grab the sushi")."""
    words, whole = fragment(spoken, rng), [w for w in spoken.words if w]
    cut = slice_up(words, rng)[: rng.choice((1, 1, 2, 3))]
    k = cut[0][0]  # words the first slice holds
    opening = words[:k] == whole[:k] and k <= OPENING_WORDS and k < len(whole)
    labels = [None if (opening and i == 0) or plain_words(text) in starts else IGNORE
              for i, (_, text) in enumerate(cut)]
    return Event("noise", [s for _, s in cut], labels, at=at)


def by_source(items: list[Spoken]) -> dict[str, list[Spoken]]:
    """Ignored speech grouped by source, drawn source first: each kind of overheard speech (news, quotes,
    talk between people, people addressing each other, monologue) is heard as often as any other, however
    many items its corpus has (quotes alone outnumber the rest together)."""
    pools: dict[str, list[Spoken]] = {}
    for item in items:
        pools.setdefault(item.item.source, []).append(item)
    return dict(sorted(pools.items()))


def draw(pools: dict[str, list[Spoken]], rng: random.Random) -> Spoken:
    return rng.choice(pools[rng.choice(list(pools))])


def balanced_sample(pools: dict[str, list[Spoken]], k: int, rng: random.Random) -> list[Spoken]:
    """`k` distinct items taken in turn from each source (shuffled), until `k` or every source runs out."""
    queues = {source: rng.sample(items, len(items)) for source, items in pools.items()}
    out: list[Spoken] = []
    while len(out) < k and any(queues.values()):
        for queue in queues.values():
            if queue and len(out) < k:
                out.append(queue.pop())
    return out


def conversation(queries: list[Spoken], noise: dict[str, list[Spoken]], replies: Replies,
                 rng: random.Random, max_events: int = 6, p_turn: float = 0.45,
                 p_during_reply: float = 0.5, starts: Openings = frozenset()) -> list[Event]:
    """A conversation of 1..max_events inputs; after a reply, inputs arrive during it half the time.

    A follow-up comes right after its lead request and that request's whole reply; an interjection while
    that reply is being spoken. `starts`: the requests' openings (`openings(queries)`), left unjudged where a
    slice of overheard speech holds only them."""
    events: list[Event] = []
    replying = False
    position = 0.0
    for _ in range(rng.randint(1, max_events)):
        at = None
        if replying and rng.random() < p_during_reply:
            position = rng.uniform(position, 0.95) if position else rng.uniform(0.05, 0.9)
            at = position
        if rng.random() < p_turn:
            spoken = rng.choice(queries)
            if spoken.lead is not None:
                events.append(query_event(spoken.lead, spoken.lead.reply(replies), rng, at))
                at = rng.uniform(0.05, 0.9) if spoken.item.over_reply else None
            events.append(query_event(spoken, spoken.reply(replies), rng, at))
            replying, position = True, 0.0
        else:
            events.append(noise_event(draw(noise, rng), rng, at, starts))
            if at is None:
                replying = False  # idle input: the reply, if any, has ended
    return events


def eval_rows(queries: list[Spoken], noise: dict[str, list[Spoken]], replies: Replies, rng: random.Random,
              max_history: int = 2) -> list[dict[str, object]]:
    """Decision points for `duo eval`: every query whole and cut, and as many ignored fragments.

    A follow-up's history ends with its lead request and that request's reply."""
    standalone = [q for q in queries if q.lead is None]

    def history(spoken: Spoken | None = None) -> list[dict[str, str]]:
        turns: list[dict[str, str]] = []
        earlier = rng.sample(standalone, min(len(standalone), rng.randint(0, max_history)))
        for before in [*earlier, *([spoken.lead] if spoken is not None and spoken.lead else [])]:
            turns += [{"role": "user", "content": before.text},
                      {"role": "assistant", "content": before.reply(replies)}]
        return turns

    rows: list[dict[str, object]] = []
    for spoken in queries:
        rows.append({"history": history(spoken), "input": spoken.text, "label": PROCESS})
        if cuts := cut_points(spoken):
            k = rng.choice(cuts)
            rows.append({"history": history(spoken), "input": " ".join(w for w in spoken.words[:k] if w),
                         "label": INCOMPLETE})
    for spoken in balanced_sample(noise, len(queries), rng):
        rows.append({"history": history(), "input": " ".join(fragment(spoken, rng)), "label": IGNORE})
    rng.shuffle(rows)
    return rows

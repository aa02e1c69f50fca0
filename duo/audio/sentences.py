"""Streamed reply text cut into the pieces speech output renders: a first clause, then whole sentences.

The voice can only start once it has a piece to render, and rendering takes time in proportion to the
speech it makes, so the first piece is cut as early as is natural: at the first clause boundary once it holds
`first_clause_words` words, and, where no boundary has come by `first_piece_words` words, between words
there. Later pieces are whole sentences, which keep their intonation; the first piece plays while they are
rendered. Where the first audio must be ready any moment (`hurried`: a reply held unheard until the user's
turn is confirmed), the first piece is the first whole words, `HURRIED_WORDS` of them or more, unless a
clause or sentence ends sooner. Nothing is cut inside a number ("1,000", "3.5", "10:30") or after an
abbreviation ("Dr.", "e.g.,").
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "approx"}
HURRIED_WORDS = 2
"""Words a hurried first piece holds at least: one word alone ("The") is no phrase to say."""
_CONJUNCTIONS = ("and", "but", "or", "so", "because", "although", "though", "unless", "whereas")
# a clause ends after , ; : (and any closing quote) before a space; at a spaced dash; at an em dash between
# letters; or before a conjunction whose word is complete (the space after it has arrived)
_CLAUSE_END = re.compile(r"(?P<mark>[,;:])[\"')\]]*\s+|(?<=[^\d\s])\s+(?:-+|[–—])\s+(?=\D)|(?<=[^\W\d])—(?=[^\W\d])"
                         rf"|(?P<conj>\s+)(?=(?:{'|'.join(_CONJUNCTIONS)})\s)", re.IGNORECASE)


def _words(text: str) -> int:
    return sum(any(ch.isalnum() for ch in w) for w in text.split())


def _abbreviated(head: str) -> bool:
    """Whether `head` ends in an abbreviation or an initial ("Dr.", "e.g.,", "J."): its dot ends nothing."""
    last = head.rstrip(",;:\"')] ").rsplit(maxsplit=1)[-1] if head.strip() else ""
    if not last.endswith("."):
        return False
    word = last.rstrip(".").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


class SentenceSplitter:
    """Collects streamed text and releases pieces as soon as they end: sentences, the first maybe a clause.

    `first_clause_words` > 0: the first piece ends at the first clause boundary (`,` `;` `:`, a dash) with at
    least that many words before it, or before a conjunction ("and", "but", ...) after twice as many; 0: it
    is a whole sentence too. `first_piece_words` > 0: a first sentence with no such boundary by then is cut
    after that many words once it goes on two words past them ("The moon is approximately 384,400
    kilometers" | "(238,855 miles) away."), which bounds the first render however the reply opens. A
    sentence longer than `max_chars` is released in clause-sized pieces (at commas, else at spaces): one
    render then never takes long, which bounds both the wait for the first audio and the work left running
    after an interruption. `hurried`: the first audio must be ready any moment, so the first piece is the
    whole words there are once they are `HURRIED_WORDS` or more, unless those rules or a sentence end cut it
    sooner.
    """

    def __init__(self, max_chars: int = 180, first_clause_words: int = 0, first_piece_words: int = 0,
                 hurried: bool = False) -> None:
        if first_clause_words < 0 or first_piece_words < 0:
            raise ValueError(f"first_clause_words and first_piece_words must be >= 0, got {first_clause_words} "
                             f"and {first_piece_words}")
        self._buf = ""
        self.max_chars = max_chars
        self.first_clause_words = first_clause_words
        self.first_piece_words = first_piece_words
        self._first = True  # nothing released yet
        self.hurried = hurried

    def _cap(self, sentence: str) -> list[str]:
        if len(sentence) <= self.max_chars:
            return [sentence]
        pieces, cur = [], ""
        for part in re.split(r"(?<=[,;:])\s+|\s+", sentence):
            sep = " " if cur else ""
            if cur and len(cur) + len(sep) + len(part) > self.max_chars:
                pieces.append(cur)
                cur, sep = "", ""
            cur += sep + part
            if cur.endswith((",", ";", ":")) and len(cur) >= self.max_chars // 3:
                pieces.append(cur)
                cur = ""
        return [*pieces, cur] if cur else pieces

    def _sentence_end(self) -> re.Match[str] | None:
        """The first real sentence end in the buffer (not the dot of "Dr." or "J.")."""
        start = 0
        while m := _SENTENCE_END.search(self._buf, start):
            head = self._buf[: m.start()]
            if head.endswith(".") and _abbreviated(head):
                start = m.end()
                continue
            return m
        return None

    def _first_clause(self) -> str | None:
        """Take the first clause off the buffer if one has ended before the first sentence does."""
        end = self._sentence_end()
        clauses = _CLAUSE_END.finditer(self._buf, 0, end.start() if end else len(self._buf))
        for m in clauses if self.first_clause_words else ():
            conjunction = m.group("conj") is not None  # it opens the next piece
            head = self._buf[: m.start() if conjunction else m.end()]
            if self.first_piece_words and _words(head) > self.first_piece_words:
                break  # past the cap: the first words go out on their own
            if _words(head) < self.first_clause_words * (2 if conjunction else 1):
                continue
            if m.group("mark") and _abbreviated(head):
                continue
            self._buf = self._buf[m.end() :]
            return head.strip()
        return self._first_words(end.start() if end else None)

    def _first_words(self, sentence_end: int | None) -> str | None:
        """Take the first `first_piece_words` words off the buffer if the sentence goes on two words past them
        (a cut that would leave one word, "ten | minutes.", is not worth the break in the voice)."""
        if not self.first_piece_words:
            return None
        words = [t for t in re.finditer(r"\S+", self._buf) if any(ch.isalnum() for ch in t.group())]
        for i, word in enumerate(words[self.first_piece_words - 1 : -2], self.first_piece_words - 1):
            head = self._buf[: word.end()]
            if sentence_end is not None and words[i + 2].start() > sentence_end:
                return None  # the sentence ends one word on: it goes out whole
            if not _abbreviated(head):
                self._buf = self._buf[word.end() :]
                return head.strip()
        return None

    def _whole_words(self) -> str | None:
        """Take every whole word off the buffer (the last one only once a space follows it), if there are at
        least `HURRIED_WORDS` and they do not end in an abbreviation or inside a number's digits."""
        words = [t for t in re.finditer(r"\S+(?=\s)", self._buf) if any(ch.isalnum() for ch in t.group())]
        if len(words) < HURRIED_WORDS:
            return None
        head = self._buf[: words[-1].end()]
        if _abbreviated(head):
            return None
        self._buf = self._buf[words[-1].end() :]
        return head.strip()

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        if self._first and (self.first_clause_words or self.first_piece_words) and (clause := self._first_clause()):
            out.extend(self._cap(clause))
        elif self._first and self.hurried and self._sentence_end() is None and (words := self._whole_words()):
            out.extend(self._cap(words))
        while m := self._sentence_end():
            sentence, self._buf = (self._buf[: m.start()] + m.group(0)).strip(), self._buf[m.end() :]
            if any(ch.isalnum() for ch in sentence):
                out.extend(self._cap(sentence))
        self._first = self._first and not out
        return out

    def flush(self) -> list[str]:
        rest, self._buf, self._first = self._buf.strip(), "", True
        return self._cap(rest) if any(ch.isalnum() for ch in rest) else []

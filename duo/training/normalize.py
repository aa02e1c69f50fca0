"""Text as speech recognition writes it: lower case, no punctuation, numbers spelled out.

The input channel reads recognizer output at run time, so training text must look like it; a controlled
share stays clean (recognizers and text clients that punctuate exist too).
"""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_TOKEN = re.compile(r"(\d{1,2}):(\d{2})|(\d[\d,]*)(\.\d+)?(st|nd|rd|th)?(%)?")


def number_words(n: int) -> str:
    """English words for a non-negative integer (`105` -> `one hundred five`)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    for value, name in _SCALES:
        if n >= value:
            head = number_words(n // value) + " " + name
            return head + ("" if n % value == 0 else " " + number_words(n % value))
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell(match: re.Match[str]) -> str:
    if match.group(1) is not None:  # a clock time: 7:30 -> seven thirty, 9:05 -> nine oh five
        hours, minutes = int(match.group(1)), int(match.group(2))
        if minutes == 0:
            return number_words(hours) + " o'clock"
        return number_words(hours) + (" oh " if minutes < 10 else " ") + number_words(minutes)
    digits, decimals, suffix, percent = match.group(3), match.group(4), match.group(5), match.group(6)
    value = int(digits.replace(",", ""))
    if suffix:
        text = ordinal_words(value)
    elif len(digits) == 4 and 1100 <= value <= 2099 and value % 100 and not decimals:  # years: 1984
        text = number_words(value // 100) + " " + (number_words(value % 100) if value % 100 >= 10
                                                   else "oh " + number_words(value % 100))
    else:
        text = number_words(value)
    if decimals:
        text += " point " + " ".join(_ONES[int(d)] for d in decimals[1:])
    return text + (" percent" if percent else "")


def asr(text: str) -> str:
    """`Set a timer for 10 min, please!` -> `set a timer for ten min please`."""
    text = text.replace("\u2019", "'").replace("&", " and ")
    text = _TOKEN.sub(lambda m: " " + _spell(m) + " ", text)
    text = text.lower()
    text = re.sub(r"[^a-z0-9' ]+", " ", text)  # punctuation and symbols become word breaks
    text = re.sub(r"(^|\s)'+|'+(?=\s|$)", " ", text)  # quotes, but not apostrophes inside words
    return " ".join(text.split())


def speechify(text: str, asr_form: bool) -> str:
    """The text in the form the input channel will read: ASR-style or clean (whitespace-normalized)."""
    return asr(text) if asr_form else " ".join(text.split())

"""Reply text cut for speech: the first clause early (never inside a number or after an abbreviation), then
whole sentences, whether the text comes whole or token by token."""

from __future__ import annotations

import re

import pytest

from duo.audio.sentences import SentenceSplitter

REPLY = "The capital of France is Paris, which is also its largest city. It has been so for a thousand years."


def split(text: str, first_clause_words: int = 0) -> list[str]:
    """All pieces of a whole text, as the streaming splitter yields them."""
    splitter = SentenceSplitter(first_clause_words=first_clause_words)
    return splitter.push(text) + splitter.flush()


def streamed(text: str, first_clause_words: int) -> list[list[str]]:
    """What each token of `text` releases (tokens as a model streams them: words, punctuation apart)."""
    splitter = SentenceSplitter(first_clause_words=first_clause_words)
    return [splitter.push(t) for t in re.findall(r"\s*[\w']+|\s*[^\w\s]", text)] + [splitter.flush()]


def test_sentence_splitting() -> None:
    assert split('Hi there! Dr. Smith said "Go." It is 3.5 km away... OK?\nNext') == [
        "Hi there!", 'Dr. Smith said "Go."', "It is 3.5 km away...", "OK?", "Next"]
    splitter, released = SentenceSplitter(), []
    for token in ["The wea", "ther is sun", "ny. It will ", "rain", " tomorrow"]:
        released.append(splitter.push(token))
    assert released == [[], [], ["The weather is sunny."], [], []] and splitter.flush() == ["It will rain tomorrow"]
    assert split(" ... ") == []
    long = "first we go north, then we turn left at the old mill, " * 5 + "and then we are there."
    pieces = split(long)
    assert len(pieces) > 1 and all(len(p) <= 180 for p in pieces) and " ".join(pieces) == long
    assert all(len(p) <= 180 for p in split("word " * 100))


def test_the_first_piece_is_a_clause_later_pieces_sentences() -> None:
    assert split(REPLY) == ["The capital of France is Paris, which is also its largest city.",
                            "It has been so for a thousand years."]
    assert split(REPLY, 4) == ["The capital of France is Paris,", "which is also its largest city.",
                               "It has been so for a thousand years."]
    # only the first: the second sentence's comma is no cut
    assert split("It is sunny today. Take a hat, a coat, and some water with you.", 2) == [
        "It is sunny today.", "Take a hat, a coat, and some water with you."]
    for mark in (";", ":", " -", " —", " --"):
        assert split(f"Here is what I found{mark} three shops are open. Good.", 4) == [
            f"Here is what I found{mark}", "three shops are open.", "Good."]
    assert split("The best part—the view—is free.", 3) == ["The best part—", "the view—is free."]


def test_the_first_clause_waits_for_enough_words() -> None:
    assert split("Sure, I can do that, right away. Done.", 4) == ["Sure, I can do that,", "right away.", "Done."]
    assert split("Yes, it is. Done.", 4) == ["Yes, it is.", "Done."]  # the sentence ends first
    assert split("Well, okay then", 4) == ["Well, okay then"]
    # before a conjunction only after twice as many words: "salt and pepper" stays whole
    assert split("I bought salt and pepper. Done.", 4) == ["I bought salt and pepper.", "Done."]
    assert split("I looked it up for you just now and the answer is four. Done.", 4) == [
        "I looked it up for you just now", "and the answer is four.", "Done."]
    assert split("I looked it up for you on android phones. Done.", 3) == [
        "I looked it up for you on android phones.", "Done."]  # "android" is no "and"
    with pytest.raises(ValueError):
        SentenceSplitter(first_clause_words=-1)


def test_numbers_and_abbreviations_are_not_cut() -> None:
    assert split("It costs about 1,000,000 dollars in total, more or less. Yes.", 4) == [
        "It costs about 1,000,000 dollars in total,", "more or less.", "Yes."]
    assert split("We leave at 10:30 for the main station and arrive at 12:15. Ok.", 4) == [
        "We leave at 10:30 for the main station", "and arrive at 12:15.", "Ok."]
    assert split("It is 3.5 km or 2.2 miles away. Ok.", 3) == ["It is 3.5 km or 2.2 miles away.", "Ok."]
    assert split("Use any tool, e.g., a hammer, to do it. Ok.", 4) == [
        "Use any tool, e.g., a hammer,", "to do it.", "Ok."]
    assert split("Ask Dr. Smith or Mr. J. Doe, they know. Ok.", 4) == ["Ask Dr. Smith or Mr. J. Doe,", "they know.",
                                                                     "Ok."]
    assert split("Pages 10–20 cover 5 - 3 and more, in depth.", 4) == ["Pages 10–20 cover 5 - 3 and more,",
                                                                       "in depth."]


def test_streamed_the_clause_is_released_with_the_word_after_it() -> None:
    released = streamed(REPLY, 4)
    at = next(i for i, r in enumerate(released) if r)
    assert released[at] == ["The capital of France is Paris,"]
    tokens = re.findall(r"\s*[\w']+|\s*[^\w\s]", REPLY)
    assert "".join(tokens[: at + 1]) == "The capital of France is Paris, which"  # the space after the comma came
    assert [p for r in released for p in r] == split(REPLY, 4)
    # "1,000" streams as "1", ",", "000": the comma with no space after it releases nothing
    assert streamed("You will need 1,000 of them, I think. Ok.", 4)[:5] == [[], [], [], [], []]
    assert [p for r in streamed("You will need 1,000 of them, I think. Ok.", 4) for p in r] == [
        "You will need 1,000 of them,", "I think.", "Ok."]
    # a new reply (after flush) starts with a clause again
    splitter = SentenceSplitter(first_clause_words=4)
    assert splitter.push(REPLY) + splitter.flush() == splitter.push(REPLY) + splitter.flush()


def test_a_long_opening_with_no_clause_is_cut_after_its_first_words() -> None:
    text = "The moon is approximately 384,400 kilometers (238,855 miles) away from Earth. It orbits us."
    tokens = re.findall(r"\s*[\w']+|\s*[^\w\s]", text)
    splitter, released = SentenceSplitter(first_clause_words=4, first_piece_words=6), []
    for token in tokens:
        released.append(splitter.push(token))
    released.append(splitter.flush())
    at = next(i for i, r in enumerate(released) if r)
    assert released[at] == ["The moon is approximately 384,400 kilometers"]  # the number stays whole
    assert "".join(tokens[: at + 1]).endswith(" (238,855 miles")  # once the sentence went on two words past
    assert [p for r in released for p in r] == [
        "The moon is approximately 384,400 kilometers", "(238,855 miles) away from Earth.", "It orbits us."]


def test_the_cap_leaves_short_openings_and_early_clauses_alone() -> None:
    def pieces(text: str, piece_words: int = 6) -> list[str]:
        splitter = SentenceSplitter(first_clause_words=4, first_piece_words=piece_words)
        return splitter.push(text) + splitter.flush()

    assert pieces(REPLY) == split(REPLY, 4)  # its clause ends at the sixth word
    assert pieces("Set a timer for 10 minutes. Done.") == ["Set a timer for 10 minutes.", "Done."]
    assert pieces("The timer is set for ten minutes. Done.")[0] == "The timer is set for ten minutes."  # 7 words
    assert pieces("The timer is set for ten more minutes. Done.")[:2] == ["The timer is set for ten", "more minutes."]
    # a boundary past the cap does not wait: the first six words go, the comma's clause follows
    assert pieces("Sure, I'll remind you to call your mother at six, okay? Bye.") == [
        "Sure, I'll remind you to call", "your mother at six, okay?", "Bye."]
    # never after an abbreviation: "Dr." stays with the name it titles
    assert pieces("Please see the doctor on call, Dr. Smith said so today.", 7)[0] == "Please see the doctor on call,"
    assert pieces("Ask for the nurse named Dr. Jones at the desk.")[0] == "Ask for the nurse named Dr. Jones"
    assert pieces(REPLY, 0) == split(REPLY, 4)  # 0: no cap
    with pytest.raises(ValueError):
        SentenceSplitter(first_piece_words=-1)


def test_a_hurried_first_piece_goes_with_the_whole_words_there_are() -> None:
    splitter = SentenceSplitter(first_clause_words=4, first_piece_words=6, hurried=True)
    assert splitter.push("The") == [] and splitter.push(" moon") == []  # "moon" may go on: not whole yet
    assert splitter.push(" is approx") == ["The moon is"]  # "approx" is not a whole word yet
    assert splitter.push("imately 384,400 km away from Earth. It") == ["approximately 384,400 km away from Earth."]
    assert splitter.push(" orbits us.") == [] and splitter.flush() == ["It orbits us."]  # later pieces: sentences
    # fewer than two whole words wait; a number's digits and an abbreviation are never the cut
    splitter = SentenceSplitter(first_clause_words=4, first_piece_words=6, hurried=True)
    assert splitter.push("Sure ") == [] and splitter.push("thing") == [] and splitter.push(" ") == ["Sure thing"]
    splitter = SentenceSplitter(first_clause_words=4, hurried=True)
    assert splitter.push("About 3") == [] and splitter.push(".5 km") == ["About 3.5"]
    splitter = SentenceSplitter(first_clause_words=4, hurried=True)
    assert splitter.push("See Dr. ") == [] and splitter.push("Smith at") == ["See Dr. Smith"]
    splitter.flush()  # the splitter's next reply is hurried too
    assert splitter.push("Sure thing ") == ["Sure thing"]
    unhurried = SentenceSplitter(first_clause_words=4)  # the clause rules alone wait for a clause
    assert unhurried.push("The moon is ") == [] and unhurried.push("about 384,400 km ") == []

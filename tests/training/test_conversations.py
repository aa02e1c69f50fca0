import random

from duo.training.conversations import cut_points, query_event, speak
from duo.training.sources import PROCESS, Item


def test_cut_points_avoid_natural_ends_and_keep_two_words_missing() -> None:
    item = Item("what's the weather like| in paris| tomorrow", PROCESS, "t", "g")
    spoken = speak(item, seed=0, asr_ratio=0.0)
    assert spoken.text == "what's the weather like in paris tomorrow"
    # 7 words; natural ends after 4 ("like") and 6 ("paris"); at least 2 words must be missing
    assert cut_points(spoken) == [1, 2, 3, 5]


def test_query_event_labels_every_slice_and_ends_in_process() -> None:
    spoken = speak(Item("please set a timer for 10 minutes in the kitchen", PROCESS, "t", "g"), 0, 1.0)
    event = query_event(spoken, "Done.", random.Random(0), None)
    assert " ".join(event.slices) == "please set a timer for ten minutes in the kitchen"
    assert event.labels[-1] == PROCESS
    assert set(event.labels[:-1]) <= {"incomplete", None}


def test_query_events_mix_whole_queries_long_prefixes_and_short_slices() -> None:
    """Some queries are heard as one slice (a short utterance closed by a pause, or typed text), some open
    with everything up to a cut, the rest in 2-7 word slices; the words always add up to the query."""
    query = "can you tell me how long it takes to drive from here to the airport"
    spoken = speak(Item(query, PROCESS, "t", "g"), 0, 1.0)
    allowed = set(cut_points(spoken))
    whole = prefix = 0
    for seed in range(200):
        event = query_event(spoken, "Sunny.", random.Random(seed), None)
        assert " ".join(event.slices) == spoken.text
        first = len(event.slices[0].split())
        whole += len(event.slices) == 1
        prefix += len(event.slices) > 1 and first > 7 and first in allowed
    assert 20 <= whole <= 70 and 5 <= prefix <= 50, (whole, prefix)


def test_clean_form_cut_slices_may_end_in_a_recognizer_mark_and_are_still_incomplete() -> None:
    """A recognizer punctuates half a query as a sentence ("What is the square root of?"); training shows such
    slices as `incomplete` so the mark alone cannot decide. The query's end and plain-form text get no mark."""
    clean = speak(Item("What is the square root of sixteen divided by four", PROCESS, "t", "g"), 0, 0.0)
    plain = speak(Item("What is the square root of sixteen divided by four", PROCESS, "t", "g"), 0, 1.0)
    assert clean.clean and not plain.clean
    marked = 0
    for seed in range(100):
        event = query_event(clean, "Two.", random.Random(seed), None)
        for text, label in zip(event.slices, event.labels, strict=True):
            if not text[-1].isalnum():
                assert label == "incomplete", (text, label)
                marked += 1
        assert event.slices[-1].endswith("four")
        assert all(t[-1].isalnum() for t in query_event(plain, "Two.", random.Random(seed), None).slices)
    assert marked >= 20, marked

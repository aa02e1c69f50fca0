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

import random
from collections import Counter
from itertools import pairwise

from duo.training.conversations import (
    OPENING_WORDS,
    balanced_sample,
    by_source,
    conversation,
    cut_points,
    draw,
    eval_rows,
    fragment,
    noise_event,
    openings,
    query_event,
    speak,
)
from duo.training.sources import IGNORE, PROCESS, Item, addresses_someone, follow_up_items, scene_items


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


def test_a_follow_up_comes_after_its_lead_and_its_reply_is_written_after_them() -> None:
    """A follow-up ("what about Tokyo") only makes sense after its request: conversations put the request and
    its whole reply right before it, its reply is the one written after that turn, and its `duo eval` rows
    carry the turn as the end of their history."""
    lead = Item("what's the weather like| in Paris", PROCESS, "followups", "followups:0")
    queries = [speak(Item("what about Tokyo", PROCESS, "followups", "followups:0", lead), 0, 1.0)]
    noise = by_source([speak(Item("the minister said on tuesday that", IGNORE, "news", "news:0"), 0, 1.0)])
    asked: list[tuple[str, tuple[str, ...]]] = []

    def replies(text: str, context: tuple[str, ...]) -> str:
        asked.append((text, context))
        return f"reply to {text} after {len(context)} turns"

    events = [e for seed in range(20) for e in conversation(queries, noise, replies, random.Random(seed), 6, 0.6)]
    turns = [(i, e) for i, e in enumerate(events) if e.kind == "turn"]
    assert turns and len(turns) % 2 == 0
    for (i, first), (j, then) in zip(turns[::2], turns[1::2], strict=True):
        assert j == i + 1 and " ".join(first.slices) == "what's the weather like in paris"
        assert " ".join(then.slices) == "what about tokyo" and then.at is None
        assert then.reply == "reply to what about tokyo after 2 turns"
    assert ("what about tokyo", ("what's the weather like in paris",
                                 "reply to what's the weather like in paris after 0 turns")) in asked

    rows = eval_rows(queries, noise, replies, random.Random(0))
    process = [r for r in rows if r["label"] == PROCESS]
    assert [r["input"] for r in process] == ["what about tokyo"]
    assert process[0]["history"][-2:] == [
        {"role": "user", "content": "what's the weather like in paris"},
        {"role": "assistant", "content": "reply to what's the weather like in paris after 0 turns"}]


def test_an_interjection_is_heard_over_its_lead_s_reply() -> None:
    """A spoken stop or redirection ("never mind that", "hold on, set an alarm") is said while the answer to the
    request before it is being spoken: it barges into that reply at some point of it, is judged `process`,
    and its reply is the one written after that turn."""
    lead = Item("tell me the whole history of Peru", PROCESS, "interjections", "interjections:0")
    item = Item("never mind that", PROCESS, "interjections", "interjections:0", lead, over_reply=True)
    queries = [speak(item, 0, 1.0)]
    noise = by_source([speak(Item("the minister said on tuesday that", IGNORE, "news", "news:0"), 0, 1.0)])

    def replies(text: str, context: tuple[str, ...]) -> str:
        return f"reply to {text} after {len(context)} turns"

    events = [e for seed in range(20) for e in conversation(queries, noise, replies, random.Random(seed), 6, 0.6)]
    pairs = [(a, b) for a, b in pairwise(events)
             if a.kind == "turn" and " ".join(b.slices) == "never mind that"]
    assert len(pairs) >= 5 and len({b.at for _, b in pairs}) == len(pairs)
    for first, then in pairs:
        assert " ".join(first.slices) == "tell me the whole history of peru"
        assert then.at is not None and 0.05 <= then.at <= 0.9 and then.labels[-1] == PROCESS
        assert then.reply == "reply to never mind that after 2 turns"


def test_interjection_items_are_over_reply_follow_ups_of_their_own_group() -> None:
    items = follow_up_items([("tell me the history of {country}", "hold on,| what year was that")], 4, seed=0,
                            source="interjections", over_reply=True)
    said = [i for i in items if i.lead is not None]
    assert len(said) == 4 and all(i.over_reply and i.lead in items and not i.lead.over_reply for i in said)
    assert {i.group for i in items} == {"interjections:0"}


def test_follow_up_items_share_their_slot_values_and_group() -> None:
    items = follow_up_items([("what's the weather like| in {city}", "what about {city2}")], 12, seed=0)
    follows = [i for i in items if i.lead is not None]
    assert len(follows) == 12 and len({i.group for i in items}) == 1
    for item in follows:
        city = item.lead.text.split()[-1]
        assert item.lead in items and item.text.startswith("what about ") and not item.text.endswith(city)


def test_ignored_speech_is_drawn_source_first() -> None:
    """Quotes outnumber talk between people 50 to 1 in the corpora; drawn source first, both are heard alike."""
    items = [speak(Item(f"quote number {n} about life", IGNORE, "fortunes", f"f:{n}"), 0, 1.0) for n in range(500)]
    items += [speak(Item(f"are you ready to order {n}", IGNORE, "addressed", f"a:{n}"), 0, 1.0) for n in range(10)]
    pools = by_source(items)
    rng = random.Random(0)
    drawn = Counter(draw(pools, rng).item.source for _ in range(2000))
    assert 900 < drawn["addressed"] < 1100, drawn
    sample = balanced_sample(pools, 30, random.Random(1))
    assert Counter(s.item.source for s in sample) == {"addressed": 10, "fortunes": 20}
    assert len({s.item.group for s in sample}) == 30


def test_a_query_sometimes_ends_with_its_last_word_alone_and_no_decision_before_it() -> None:
    """Slices are cut by time, so the last word of a request can arrive alone; that word ends it (`process`)
    and the slice before it, two words short of a cut, is not judged."""
    spoken = speak(Item("tell me a story about a dragon who learns to fly", PROCESS, "t", "g"), 0, 1.0)
    alone = 0
    for seed in range(200):
        event = query_event(spoken, "Once.", random.Random(seed), None)
        assert " ".join(event.slices) == spoken.text and event.labels[-1] == PROCESS
        if len(event.slices) > 1 and event.slices[-1] == "fly":
            alone += 1
            assert event.labels[-2] is None
    assert 15 <= alone <= 80, alone


def test_ignored_speech_is_sometimes_only_its_last_words_never_only_its_first() -> None:
    """After an input is dropped the next slice may hold only the end of what was overheard (2-4 words, never
    one: a lone word could as well begin a request), and no fragment is only the opening words, which could."""
    spoken = speak(Item("can you chop the onions while I start the sauce please", IGNORE, "m", "g"), 0, 1.0)
    words = spoken.text.split()
    tails = 0
    for seed in range(300):
        heard = fragment(spoken, random.Random(seed))
        assert " ".join(heard) in spoken.text and len(heard) >= 2
        if heard == words[: len(heard)]:
            assert len(heard) > OPENING_WORDS
        if len(heard) <= 4 and heard == words[-len(heard):]:
            tails += 1
    assert 25 <= tails <= 90, tails


def test_the_opening_words_of_ignored_speech_are_not_judged_alone() -> None:
    """"can you" opens requests as well as talk to someone else: a first slice holding no more than the
    opening words of overheard speech is left unjudged; what follows it is `ignore`."""
    spoken = speak(Item("can you chop the onions while I start the sauce please", IGNORE, "m", "g"), 0, 1.0)
    unjudged = 0
    for seed in range(300):
        event = noise_event(spoken, random.Random(seed), None)
        assert set(event.labels[1:]) <= {IGNORE}
        if event.labels[0] is None:
            unjudged += 1
            assert spoken.text.startswith(event.slices[0]) and len(event.slices[0].split()) <= OPENING_WORDS
        else:
            assert event.labels[0] == IGNORE
            assert not (spoken.text.startswith(event.slices[0] + " ") and len(event.slices[0].split()) <= 3)
    assert unjudged >= 10, unjudged


def test_a_scene_holds_both_sides_in_one_source_item() -> None:
    """People in a restaurant talk to each other (ignore) and the user asks the assistant about the same
    place (process); one group per scene, so no split sees one side without the other."""
    items = scene_items(3, seed=0)
    restaurant = [i for i in items if i.group == "scenes:0"]
    assert {i.label for i in restaurant} == {IGNORE, PROCESS}
    assert {(i.source, i.label) for i in items} == {("scene-talk", IGNORE), ("scene-requests", PROCESS)}
    assert len({i.text for i in items}) == len(items)


def test_chat_lines_that_ask_nothing_and_name_no_one_are_not_queries() -> None:
    assert addresses_someone("what is the capital of peru")
    assert addresses_someone("tell me a joke") and addresses_someone("you are a coward")
    assert addresses_someone("My laptop screen is black.") and addresses_someone("Is it raining?")
    assert not addresses_someone("stock market") and not addresses_someone("frank herbert")
    assert not addresses_someone("The cake is a lie.")


def test_a_query_sometimes_opens_with_its_first_words_alone_judged_incomplete() -> None:
    """A pause after the first words, or a partial transcript of them, puts a request's opening alone in a
    slice ("set" of "set a timer"): training shows it as `incomplete`, one to three words long."""
    spoken = speak(Item("set a timer for ten minutes for the pasta", PROCESS, "t", "g"), 0, 1.0)
    lengths: Counter[int] = Counter()
    for seed in range(300):
        event = query_event(spoken, "Done.", random.Random(seed), None)
        assert " ".join(event.slices) == spoken.text
        first = len(event.slices[0].split())
        if first == 1:
            assert event.labels[0] == "incomplete"
        lengths[first] += 1
    assert lengths[1] >= 15 and lengths[2] + lengths[3] >= 30, lengths


def test_overheard_words_that_open_requests_are_not_judged_alone() -> None:
    """"can you" out of "Lisa can you grab the sushi" is also how a request begins: a slice whose words are a
    request's opening is left unjudged (never taught as `ignore`); other slices of the same speech are."""
    requests = [speak(Item(q, PROCESS, "t", q), 0, 1.0) for q in ("can you tell me a joke", "turn on the lights")]
    starts = openings(requests)
    assert {("can",), ("can", "you"), ("turn", "on", "the")} <= starts and ("tell",) not in starts
    spoken = speak(Item("Lisa can you grab the sushi out of the fridge", IGNORE, "people", "g"), 0, 1.0)
    seen = 0
    for seed in range(3000):
        event = noise_event(spoken, random.Random(seed), None, starts)
        for text, label in zip(event.slices, event.labels, strict=True):
            words = tuple(text.lower().split())
            if words in starts:
                seen += 1
                assert label is None, text
            elif label is None:
                assert text == event.slices[0] and spoken.text.lower().startswith(text.lower())
            else:
                assert label == IGNORE
    assert seen >= 10, seen

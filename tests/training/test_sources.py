"""Source corpora: what counts as a query said to the assistant."""

import pytest

from duo.training.sources import PROCESS, chatterbot_queries, said_to_assistant


@pytest.mark.parametrize("text", ["What is AI?", "how is your health", "you make me mad", "My printer is not printing.",
                                  "write a SQL query with join", "hello i am here for my appointment", "Do not lie"])
def test_queries_said_to_an_assistant_are_kept(text: str) -> None:
    assert said_to_assistant(text)


@pytest.mark.parametrize("text", ["william gibson", "stock market", "Robots laugh", "The cake is a lie.",
                                  "Dolphins use a sense, similar to sonar, to find things."])
def test_bare_topics_and_statements_are_not_queries(text: str) -> None:
    assert not said_to_assistant(text)


def test_chatterbot_queries_hold_no_bare_topics() -> None:
    items = chatterbot_queries()
    texts = {i.text.lower() for i in items}
    assert len(items) > 650 and all(i.label == PROCESS for i in items)
    assert "what is ai" in {t.rstrip("?") for t in texts}
    assert not {"william gibson", "stock market", "robots laugh"} & texts

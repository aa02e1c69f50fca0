"""The `openai` Python SDK, GA (`client.realtime`) and beta (`client.beta.realtime`), unmodified, against duo.

The driver records every event the SDK parsed; these tests assert the protocol the SDK's users rely on.
Beta connects through the SDK's `websocket_base_url` (the beta interface dials `wss://` otherwise).
"""

from __future__ import annotations

from typing import Any

import pytest

from duo.server.inprocess import InProcessServer

from .conftest import engine_session, run_driver

GA_TO_BETA = {"response.output_text.delta": "response.text.delta",
              "response.output_audio.delta": "response.audio.delta",
              "response.output_audio_transcript.delta": "response.audio_transcript.delta",
              "response.output_text.done": "response.text.done",
              "response.output_audio_transcript.done": "response.audio_transcript.done",
              "conversation.item.added": "conversation.item.created"}


@pytest.fixture(scope="module", params=["ga", "beta"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


_RUNS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def runs(server: InProcessServer, speech: dict[str, str], main_python: str) -> dict[str, dict[str, Any]]:
    return _RUNS


def results(api: str, server: InProcessServer, speech: dict[str, str], main_python: str) -> dict[str, Any]:
    if api not in _RUNS:
        seen: dict[str, Any] = {}

        def inspect(name: str) -> None:
            session = engine_session(server)
            seen[name] = {"turns": list(session.turns),
                          "system": session.vocab.tokenizer.decode(session.framing.system)}

        _RUNS[api] = run_driver(main_python, "openai_sdk.py", server, speech, inspect, api=api)
        _RUNS[api]["_checkpoints"] = seen
    return _RUNS[api]


class Events:
    """One scenario's events, asked for by their GA names whatever the API."""

    def __init__(self, result: dict[str, Any], api: str) -> None:
        assert "failed" not in result, result.get("trace") or result["failed"]
        self.all, self.api, self.result = result["events"], api, result

    def name(self, ga: str) -> str:
        return GA_TO_BETA.get(ga, ga) if self.api == "beta" else ga

    def of(self, ga: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.all if e["type"] == self.name(ga) and all(e.get(k) == v for k, v in match.items())]

    def index(self, ga: str, **match: Any) -> int:
        return next(i for i, e in enumerate(self.all) if e["type"] == self.name(ga)
                    and all(e.get(k) == v for k, v in match.items()))

    def types(self) -> list[str]:
        return [e["type"] for e in self.all]


@pytest.fixture
def scenario(request: pytest.FixtureRequest, api: str, server: InProcessServer, speech: dict[str, str],
             main_python: str) -> Any:
    def get(name: str) -> Events:
        return Events(results(api, server, speech, main_python)[name], api)

    return get


def _replies(ev: Events) -> list[dict[str, Any]]:
    return [e["response"] for e in ev.of("response.done")]


def test_text_turn(scenario: Any, api: str) -> None:
    ev = scenario("text")
    assert not ev.of("error") and "duo.input.state" not in ev.types()  # standard events only
    session = ev.of("session.updated")[-1]["session"]
    td = session["turn_detection"] if api == "beta" else session["audio"]["input"]["turn_detection"]
    assert td["type"] == "semantic_vad" and "process_threshold" in td["duo"]  # a published type, DUO's knobs
    user = ev.of("conversation.item.added")[0]
    assert user["item"]["role"] == "user" and ev.index("conversation.item.added") < ev.index("response.created")
    done = ev.of("response.done")
    assert len(ev.of("response.created")) == len(done) == 1  # the text item alone was not answered
    response = done[0]["response"]
    assert response["status"] == "completed" and response["metadata"] == {"turn": "one"}
    text = "".join(e["delta"] for e in ev.of("response.output_text.delta"))
    assert "Paris" in text and response["output"][0]["content"][0]["text"] == text
    assistant = next(e for e in ev.of("conversation.item.added") if e["item"]["role"] == "assistant")
    assert assistant["previous_item_id"] == user["item"]["id"]
    for kind in ("response.content_part.added", "response.content_part.done", "response.output_item.done"):
        assert ev.of(kind), kind
    assert ev.index("response.done") == max(i for i, e in enumerate(ev.all) if e.get("response_id") == response["id"]
                                            or e.get("response", {}).get("id") == response["id"])


def test_spoken_turn(scenario: Any) -> None:
    ev = scenario("spoken")
    assert not ev.of("error")
    started, stopped, committed = (ev.index(k) for k in ("input_audio_buffer.speech_started",
                                                          "input_audio_buffer.speech_stopped",
                                                          "input_audio_buffer.committed"))
    assert started < stopped < committed < ev.index("response.created")
    item = ev.of("input_audio_buffer.committed")[0]["item_id"]
    assert ev.of("input_audio_buffer.speech_started")[0]["item_id"] == item
    completed = ev.of("conversation.item.input_audio_transcription.completed", item_id=item)[0]
    assert "capital of france" in completed["transcript"].lower() and completed["usage"]["seconds"] > 0
    deltas = "".join(e["delta"] for e in ev.of("conversation.item.input_audio_transcription.delta", item_id=item))
    assert deltas == completed["transcript"]  # deltas carry their spaces
    assert ev.of("response.done")[0]["response"]["status"] in ("completed", "incomplete")


def test_push_to_talk_answers_the_whole_committed_buffer(scenario: Any) -> None:
    ev = scenario("push_to_talk")
    assert not ev.of("error") and not ev.of("input_audio_buffer.speech_started")  # no turn detection, no VAD
    completed = ev.of("conversation.item.input_audio_transcription.completed")[0]
    assert "capital of france" in completed["transcript"].lower()
    assert ev.index("conversation.item.input_audio_transcription.completed") < ev.index("response.created")
    assert len(ev.of("response.done")) == 1


def test_barge_in(scenario: Any) -> None:
    ev = scenario("barge_in")
    assert not ev.of("error")
    first, second = ev.result["first"], ev.result["second"]
    cut = next(r for r in _replies(ev) if r["id"] == first)
    barge = ev.index("input_audio_buffer.speech_started")
    cut_at = next(i for i, e in enumerate(ev.all) if e["type"] == "response.done" and e["response"]["id"] == first)
    if cut_at > barge:  # cut while duo was still producing it
        assert cut["status"] == "cancelled" and cut["status_details"]["reason"] == "turn_detected"
        assert cut["output"][0]["status"] == "incomplete"
    else:  # all of its audio was out before: the client was still playing it, and flushes on the new response
        assert cut["status"] in ("completed", "incomplete")
    assert barge < ev.index("response.created", response=ev.of("response.created")[1]["response"])
    done_at = next(i for i, e in enumerate(ev.all) if e["type"] == "response.done" and e["response"]["id"] == first)
    assert not [e for e in ev.all[done_at + 1:] if e.get("response_id") == first]  # nothing after its done
    assert any(e["response"]["id"] == second for e in ev.of("response.done"))


def test_cancel(scenario: Any) -> None:
    ev = scenario("cancel")
    assert not ev.of("error")
    (done,) = ev.of("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    assert done["response"]["output"][0]["status"] == "incomplete"
    assert not [e for e in ev.all[ev.index("response.done") + 1:] if e.get("response_id")]


def test_context_sync(scenario: Any, api: str, server: InProcessServer, speech: dict[str, str],
                      main_python: str) -> None:
    ev = scenario("context")
    synced = results(api, server, speech, main_python)["_checkpoints"]["synced"]
    assert synced["turns"] == [{"role": "user", "content": "my name is ada"},
                               {"role": "assistant", "content": "nice to meet you ada"}]
    assert synced["system"].rstrip().endswith("always answer in english") or "always answer in english" in synced[
        "system"]
    added = {e["item"]["id"]: e for e in ev.of("conversation.item.added")}
    assert added["item_a1"]["previous_item_id"] == "item_u1" and added["item_s1"]["previous_item_id"] is None
    assert ev.of("conversation.item.deleted")[0]["item_id"] == "item_x"
    assert ev.of("conversation.item.retrieved")[0]["item"]["id"] == "item_a1"
    (error,) = ev.of("error")
    assert error["error"]["event_id"] == "evt_gone"  # errors name the client's event
    assert ev.of("response.done")[0]["response"]["status"] in ("completed", "incomplete")


def test_background_speech_does_not_stop_the_reply(scenario: Any) -> None:
    ev = scenario("background")
    assert not ev.of("error")
    assert not ev.of("input_audio_buffer.speech_started")  # judged `ignore`: not speech for duo
    assert len(ev.of("response.created")) == 1
    assert ev.of("response.done")[0]["response"]["status"] in ("completed", "incomplete")

"""The wire form of server events, and the outbound queue's interruption policy (no model needed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from duo.server import objects as ob
from duo.server import protocol as p
from duo.server import server_events as se
from duo.server.options import SessionOptions
from duo.server.transport import Outbox, SlowClient


def _wire(event: se.ServerEvent, beta: bool = False) -> dict:
    data = json.loads(event.to_json(beta))
    assert data.pop("event_id").startswith("event_")
    return data


def test_every_event_type_has_one_model() -> None:
    models = [m for m in vars(se).values() if isinstance(m, type) and issubclass(m, se.ServerEvent)]
    types = [m.model_fields["type"].default for m in models if isinstance(m.model_fields["type"].default, str)]
    assert len(types) == len(set(types)) == 33
    assert set(se.BETA_NAMES) <= set(types)


def test_wire_form_of_a_spoken_response() -> None:
    item = ob.AssistantItem(id="item_1", status="completed", content=[ob.OutputAudioContent(transcript="Hi.")])
    done = se.ResponseDone(response=ob.FinishedResponse(id="resp_1", status="completed", status_details=None,
                                                        output=[item], conversation_id="conv_1",
                                                        output_modalities=["audio"], metadata={"k": "v"}))
    assert _wire(done) == {"type": "response.done", "response": {
        "id": "resp_1", "object": "realtime.response", "status": "completed", "conversation_id": "conv_1",
        "output_modalities": ["audio"], "metadata": {"k": "v"}, "status_details": None,
        "output": [{"id": "item_1", "object": "realtime.item", "type": "message", "status": "completed",
                    "role": "assistant", "content": [{"type": "output_audio", "transcript": "Hi."}]}],
        "usage": None}}
    assert _wire(done, beta=True)["response"]["output"][0]["content"] == [{"type": "audio", "transcript": "Hi."}]
    assert list(json.loads(done.to_json()))[:2] == ["type", "event_id"]
    created = se.ResponseCreated(response=ob.StartedResponse(id="resp_1", status="in_progress"))
    assert _wire(created)["response"] == {"id": "resp_1", "object": "realtime.response", "status": "in_progress",
                                          "conversation_id": None, "output_modalities": ["text"], "metadata": None,
                                          "status_details": None, "output": []}
    assert se.ItemDone(item=item).to_json(beta=True) is None  # beta has no conversation.item.done
    delta = se.OutputAudioDelta(response_id="resp_1", item_id="item_1", delta="AAA=")
    assert _wire(delta, beta=True) == {"type": "response.audio.delta", "response_id": "resp_1", "item_id": "item_1",
                                       "output_index": 0, "content_index": 0, "delta": "AAA="}


def test_wire_form_drops_top_level_nulls_only() -> None:
    assert _wire(se.AudioCommitted()) == {"type": "input_audio_buffer.committed"}
    assert _wire(se.Error.of("invalid_json", "not valid JSON")) == {"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_json", "message": "not valid JSON"}}
    options = SessionOptions()
    options.turn_detection = None
    session = _wire(se.SessionCreated(session=ob.SessionInfo(**options.describe("sess_1"))))["session"]
    assert session["instructions"] is None and session["audio"]["input"]["turn_detection"] is None
    options.turn_detection = p.ServerVadTurnDetection()
    info = ob.SessionInfo(**options.describe("sess_1"))
    vad = _wire(se.SessionUpdated(session=info))["session"]["audio"]["input"]["turn_detection"]
    assert vad == p.ServerVadTurnDetection().model_dump()


def test_duo_reports_the_published_type_with_its_parameters_in_an_extension() -> None:
    """`semantic_vad` is DUO's detector; `eagerness` picks pause and thresholds; `duo` is an alias that also
    turns on duo's own events; the session reports `semantic_vad` with every DUO parameter resolved."""
    options = SessionOptions()
    reported = options.describe("sess_1")["audio"]["input"]["turn_detection"]
    assert reported["type"] == "semantic_vad" and reported["duo"]["pause_ms"] == 500
    assert not reported["duo"]["events"] and not options.duo_events
    eager = p.DuoTurnDetection.model_validate({"type": "semantic_vad", "eagerness": "high"})
    low = p.DuoTurnDetection.model_validate({"type": "semantic_vad", "eagerness": "low"})
    assert eager.params.pause_ms < 500 < low.params.pause_ms
    assert eager.params.process_threshold < 0.5 < low.params.process_threshold
    alias = p.DuoTurnDetection.model_validate({"type": "duo", "pause_ms": 600, "incomplete_timeout_ms": None})
    assert alias.params.events and alias.params.pause_ms == 600 and alias.params.incomplete_timeout_ms is None
    again = p.DuoTurnDetection.model_validate(alias.reported())  # what a session reports, sent back, is the same
    assert again.params == alias.params and again.reported() == alias.reported()
    beta = options.describe("sess_1", beta=True)
    assert beta["input_audio_format"] == "pcm16" and beta["modalities"] == ["text"]
    assert beta["turn_detection"] == reported


async def test_an_interruption_withdraws_queued_audio_but_no_control_event() -> None:
    box = Outbox(limit=8)
    ids = {"response_id": "resp_1", "item_id": "item_1"}
    box.put(se.OutputAudioDelta(**ids, delta="AA=="))
    box.put(se.OutputAudioTranscriptDelta(**ids, delta="Hi"))
    box.put(se.OutputAudioDelta(response_id="resp_2", item_id="item_2", delta="BB=="))
    box.put(se.OutputAudioDelta(**ids, delta="CC=="))
    details = ob.StatusDetails(type="cancelled", reason="turn_detected")
    box.put(se.ResponseDone(response=ob.FinishedResponse(id="resp_1", status="cancelled", status_details=details,
                                                         output=[])))
    assert box.drop_audio("resp_1") == 2
    box.close()
    left = []
    while (event := await asyncio.wait_for(box.get(), 1)) is not None:
        left.append(event.type)
    assert left == ["response.output_audio_transcript.delta", "response.output_audio.delta", "response.done"]
    full = Outbox(limit=1)
    full.put(se.AudioCleared())
    with pytest.raises(SlowClient):
        full.put(se.AudioCleared())

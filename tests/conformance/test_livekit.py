"""livekit-plugins-openai's RealtimeSession (what a LiveKit AgentSession drives), from PyPI in its own
environment, unmodified, against duo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from duo.server.inprocess import InProcessServer

from .conftest import engine_session, run_driver


@pytest.fixture(scope="module")
def runs(server: InProcessServer, speech: dict[str, str], client_env: Callable[[str], Path]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    results = run_driver(client_env("livekit"), "livekit_realtime.py", server, speech,
                         lambda name: seen.setdefault(name, list(engine_session(server).turns)))
    return {**results, "_checkpoints": seen}


def scenario(runs: dict[str, Any], name: str) -> dict[str, Any]:
    result = runs[name]
    assert "failed" not in result, result.get("trace") or result["failed"]
    assert not [e for e in result["events"] if e["type"] == "error"], "LiveKit reported an error"
    assert "error" not in [e["type"] for e in result["raw"]]
    return result


def responses(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["response"] for e in result["raw"] if e["type"] == "response.done"]


def test_text_turn(runs: dict[str, Any]) -> None:
    """generate_reply() resolves: LiveKit finds its response by the metadata duo echoes."""
    result = scenario(runs, "text")
    (generation,) = result["generations"]
    assert generation["user_initiated"] and generation["done"] and "Paris" in generation["text"]
    assert responses(result)[0]["metadata"]["client_event_id"].startswith("response_create_")


def test_spoken_turn(runs: dict[str, Any]) -> None:
    result = scenario(runs, "spoken")
    kinds = [e["type"] for e in result["events"]]
    assert "input_speech_started" in kinds and "input_audio_transcription_completed" in kinds
    assert "capital of france" in result["chat_ctx"][0]["text"].lower()
    assert result["generations"] and result["generations"][0]["done"]


def test_barge_in(runs: dict[str, Any]) -> None:
    result = scenario(runs, "barge_in")
    first, second = responses(result)[:2]
    assert first["status"] in ("cancelled", "completed", "incomplete")
    assert second["status"] in ("completed", "incomplete")
    if first["status"] == "cancelled":
        assert first["status_details"]["reason"] == "turn_detected"
    assert [e["type"] for e in result["events"]].count("input_speech_started") == 1
    assert len(result["generations"]) == 2 and all(g["done"] for g in result["generations"])


def test_cancel(runs: dict[str, Any]) -> None:
    result = scenario(runs, "cancel")
    (done,) = responses(result)
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    assert result["generations"][0]["done"]


def test_context_sync(runs: dict[str, Any]) -> None:
    """update_chat_ctx (creates chained by previous_item_id, a delete) resolves, and duo's model holds it."""
    result = scenario(runs, "context")
    assert runs["_checkpoints"]["synced"] == [{"role": "user", "content": "my name is ada"},
                                              {"role": "assistant", "content": "nice to meet you ada"}]
    assert [i["text"] for i in result["chat_ctx"][:3]] == ["my name is ada", "nice to meet you ada",
                                                           "what is my name?"]
    assert "conversation.item.deleted" in [e["type"] for e in result["raw"]]


def test_background_speech_does_not_stop_the_reply(runs: dict[str, Any]) -> None:
    result = scenario(runs, "background")
    assert "input_speech_started" not in [e["type"] for e in result["events"]]
    assert [r["status"] for r in responses(result)] in (["completed"], ["incomplete"])

"""openai-agents (RealtimeAgent / RealtimeRunner), from PyPI in its own environment, unmodified, against duo."""

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
    results = run_driver(client_env("agents"), "openai_agents.py", server, speech,
                         lambda name: seen.setdefault(name, list(engine_session(server).turns)))
    return {**results, "_checkpoints": seen}


def scenario(runs: dict[str, Any], name: str) -> dict[str, Any]:
    result = runs[name]
    assert "failed" not in result, result.get("trace") or result["failed"]
    assert not [e for e in result["events"] if e["type"] == "error"], "the SDK reported errors"
    return result


def raw(result: dict[str, Any]) -> list[str]:
    return [e["raw"] for e in result["events"] if e["type"] == "raw_model_event"]


def responses(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["response"] for e in result["events"] if e.get("raw") == "response.done"]


def test_text_turn(runs: dict[str, Any]) -> None:
    result = scenario(runs, "text")
    assert [r["status"] for r in responses(result)] == ["completed"]
    assistant = [i for i in result["history"] if i["role"] == "assistant"]
    assert assistant and "Paris" in assistant[-1]["text"]


def test_spoken_turn(runs: dict[str, Any]) -> None:
    result = scenario(runs, "spoken")
    user = [i for i in result["history"] if i["role"] == "user"]
    assert user and "capital of france" in user[0]["text"].lower()
    assert len(responses(result)) == 1


def test_barge_in(runs: dict[str, Any]) -> None:
    result = scenario(runs, "barge_in")
    kinds = [e["type"] for e in result["events"]]
    assert "audio_interrupted" in kinds  # the SDK stopped its playback
    first, second = responses(result)[:2]
    if first["status"] == "cancelled":  # cut while duo was still producing it
        assert first["status_details"]["reason"] == "turn_detected"
    else:  # all of it was out, the SDK still playing it: the SDK tells duo how much was heard
        assert "conversation.item.truncated" in raw(result)
    assert second["status"] in ("completed", "incomplete")


def test_cancel(runs: dict[str, Any]) -> None:
    result = scenario(runs, "cancel")
    (done,) = responses(result)
    assert done["status"] == "cancelled"


def test_context_sync(runs: dict[str, Any]) -> None:
    result = scenario(runs, "context")
    held = runs["_checkpoints"]["two turns"]
    mine = [{"role": i["role"], "content": i["text"]} for i in result["history"]]
    assert [t["role"] for t in held] == ["user", "assistant"] * 2
    assert [m["content"] for m in mine] == [t["content"] for t in held]  # the SDK's copy is the model's


def test_background_speech_does_not_stop_the_reply(runs: dict[str, Any]) -> None:
    result = scenario(runs, "background")
    kinds = [e["type"] for e in result["events"]]
    assert "audio_interrupted" not in kinds and "input_audio_buffer.speech_started" not in raw(result)
    assert [r["status"] for r in responses(result)] in (["completed"], ["incomplete"])

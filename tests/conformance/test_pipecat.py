"""pipecat's OpenAIRealtimeLLMService, from PyPI in its own environment, unmodified, against duo.

pipecat treats every `error` event as fatal and parses `session.created` into its own strict models, so a
scenario that finishes without an ErrorFrame is already a statement about the protocol.
"""

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

    def inspect(name: str) -> None:
        session = engine_session(server)
        seen[name] = {"turns": list(session.turns), "system": session.vocab.tokenizer.decode(session.framing.system)}

    return {**run_driver(client_env("pipecat"), "pipecat_realtime.py", server, speech, inspect), "_checkpoints": seen}


def scenario(runs: dict[str, Any], name: str) -> dict[str, Any]:
    result = runs[name]
    assert "failed" not in result, result.get("trace") or result["failed"]
    assert not [f for f in result["frames"] if f["frame"] == "ErrorFrame"], "pipecat reported an error"
    return result


def frames(result: dict[str, Any]) -> list[str]:
    return [f["frame"] for f in result["frames"]]


def assistant(result: dict[str, Any]) -> list[str]:
    return [m["content"] for m in result["context"] if m["role"] == "assistant"]


def test_text_turn(runs: dict[str, Any]) -> None:
    result = scenario(runs, "text")
    assert "Paris" in "".join(f.get("text", "") for f in result["frames"] if f["frame"] == "LLMTextFrame")
    assert len(assistant(result)) == 1 and "Paris" in assistant(result)[0]  # pipecat's context has the reply


def test_spoken_turn(runs: dict[str, Any]) -> None:
    result = scenario(runs, "spoken")
    users = [m["content"] for m in result["context"] if m["role"] == "user"]
    assert any("capital of france" in (u or "").lower() for u in users)  # the transcript reached the context
    assert "UserStartedSpeakingFrame" in frames(result)


def test_barge_in(runs: dict[str, Any]) -> None:
    result = scenario(runs, "barge_in")
    kinds = frames(result)
    assert "InterruptionFrame" in kinds  # the user's turn interrupted the bot
    first = next(i for i in result["items"] if i["role"] == "assistant" and i["status"] != "in_progress")
    assert first["status"] in ("incomplete", "completed")
    assert kinds.count("LLMFullResponseEndFrame") >= 2


def test_cancel(runs: dict[str, Any]) -> None:
    result = scenario(runs, "cancel")
    done = [i for i in result["items"] if i["role"] == "assistant" and i["status"] != "in_progress"]
    assert done and done[-1]["status"] == "incomplete"  # cancelled mid-reply


def test_context_sync(runs: dict[str, Any]) -> None:
    """pipecat sends a history as one user item (its own packing) and its system prompt as instructions."""
    scenario(runs, "context")
    held = runs["_checkpoints"]["synced"]
    first = held["turns"][0]
    assert first["role"] == "user" and "my name is ada" in first["content"]
    assert "nice to meet you ada" in first["content"] and "what is my name?" in first["content"]
    assert held["system"].strip().endswith("You are a helpful voice assistant.") or (
        "You are a helpful voice assistant." in held["system"])


def test_background_speech_does_not_stop_the_reply(runs: dict[str, Any]) -> None:
    result = scenario(runs, "background")
    kinds = frames(result)
    assert "ProposedUserStartedSpeakingFrame" not in kinds and "InterruptionFrame" not in kinds
    assert kinds.count("LLMFullResponseEndFrame") == 1

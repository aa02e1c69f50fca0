"""docs/protocol.md's compatibility table says what this suite proves: every ✓ has its test here (which passes
in the same run), every client row names the version its environment pins, and no client goes untested."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .envs import REPO, REQUIREMENTS

HERE = Path(__file__).parent
COLUMNS = {"text turn": "test_text_turn", "spoken turn": "test_spoken_turn", "barge-in": "test_barge_in",
           "cancel": "test_cancel", "context sync": "test_context_sync",
           "background speech over a reply": "test_background_speech_does_not_stop_the_reply"}
ROWS = {"GA `client.realtime`": ("test_openai_sdk.py", None),
        "beta `client.beta.realtime`": ("test_openai_sdk.py", None),
        "`openai-agents`": ("test_openai_agents.py", "agents"), "`pipecat-ai`": ("test_pipecat.py", "pipecat"),
        "`livekit-plugins-openai`": ("test_livekit.py", "livekit")}


def _table() -> tuple[list[str], list[list[str]]]:
    text = (REPO / "docs" / "protocol.md").read_text()
    section = text.split("## Compatibility", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def _tests(module: str) -> set[str]:
    tree = ast.parse((HERE / module).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_tick_has_its_test() -> None:
    header, rows = _table()
    assert [COLUMNS[h] for h in header[1:]]  # every column is a scenario this suite runs
    assert len(rows) == len(ROWS)
    for row in rows:
        (module, env), = [v for k, v in ROWS.items() if k in row[0]]
        for name, cell in zip(header[1:], row[1:], strict=True):
            assert cell.startswith("✓"), f"{row[0]}: {name}"
            assert COLUMNS[name] in _tests(module), f"{row[0]}: {name} has no test in {module}"
        if env is not None:  # the version shown is the one installed
            pinned = re.search(r"==(\d+\.\d+)", (REQUIREMENTS / f"{env}.txt").read_text())
            assert pinned and pinned.group(1) in row[0], f"{row[0]} does not show the pinned {pinned}"

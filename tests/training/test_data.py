"""The data build from the installed corpora and the shipped reply cache: deterministic, split by source."""

import json
from pathlib import Path

import pytest

from duo.engine.framing import DEFAULT_INSTRUCTIONS
from duo.training.data import BuildConfig, build, split_items
from duo.training.evaluate import load_rows
from duo.training.replies import EMBEDDED_ID, ReplyCache, shipped_cache
from duo.training.sources import load_all


@pytest.mark.parametrize("model", [EMBEDDED_ID, "embedded:qwen2.5-coder-1.5b", "embedded:qwen2.5-coder-0.5b"])
def test_build_is_deterministic_split_by_source_and_offline(tmp_path: Path, model: str) -> None:
    """Each embedded model ships the replies its build needs, follow-ups' included."""
    cache = ReplyCache(shipped_cache(model))
    config = BuildConfig(train_decisions=1500, eval_decisions=200)
    a = build(tmp_path / "a", config, cache, model, DEFAULT_INSTRUCTIONS)  # no generator: must be cached
    b = build(tmp_path / "b", config, cache, model, DEFAULT_INSTRUCTIONS)
    assert a == b
    for name in ("train.jsonl", "test.jsonl", "test.eval.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = a["splits"]["train"]["decisions"]
    assert sum(train.values()) >= 1500 and min(train.values()) > 0
    rows = load_rows(tmp_path / "a" / "test.eval.jsonl")
    assert {r["label"] for r in rows} == {"process", "ignore", "incomplete"}
    splits = split_items(load_all(0), config)
    groups = [{i.group for i in items} for items in splits.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    first = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])
    assert first["events"] and all(e["kind"] in ("turn", "noise") for e in first["events"])

import json
from pathlib import Path

import pytest

from duo.training.evaluate import EvalDataError, load_rows, metrics


def test_metrics_process_vs_ignore_and_confusion() -> None:
    gold = ["process", "process", "ignore", "ignore", "incomplete", "process"]
    pred = ["process", "incomplete", "process", "ignore", "incomplete", "process"]
    m = metrics(gold, pred)
    assert m["precision"] == pytest.approx(100 * 2 / 3)
    assert m["recall"] == pytest.approx(100 * 2 / 3)
    assert m["f1"] == pytest.approx(100 * 2 / 3)
    assert m["accuracy"] == pytest.approx(100 * 4 / 6)
    assert m["confusion"]["process"] == {"process": 2, "ignore": 0, "incomplete": 1}
    assert m["recall_per_label"]["incomplete"] == 100.0 and m["n"] == 6


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not JSON"),
    ('{"input": "hi", "label": "maybe"}', "'label' must be one of"),
    ('{"input": "", "label": "process"}', "'input' must be a non-empty string"),
    ('{"history": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], "input": "a", '
     '"label": "ignore"}', "history[0]"),
])
def test_malformed_rows_give_clear_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"input": "ok", "label": "process"}) + "\n" + line + "\n")
    with pytest.raises(EvalDataError, match=r"bad.jsonl:2: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        load_rows(path)

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


def test_eval_cli_reports_and_writes_each_decision(tmp_path: Path, tiny_model_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`duo eval --json --predictions`: the metrics agree with the per-row decisions written beside them."""
    from duo.cli import main

    rows = [{"history": [], "input": "set a timer for ten minutes", "label": "process"},
            {"history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
             "input": "the market closed higher today", "label": "ignore"},
            {"history": [], "input": "what is the", "label": "incomplete"}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pred.jsonl"
    code = main(["eval", "--data", str(data), "--model", str(tiny_model_dir), "--adapter", "none",
                 "--device", "cpu", "--dtype", "float32", "--json", "--predictions", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["input"] for w in written] == [r["input"] for r in rows]
    assert all(set(w["probs"]) == {"process", "ignore", "incomplete"} for w in written)
    assert all(abs(sum(w["probs"].values()) - 1) < 1e-4 for w in written)
    assert report["n"] == 3
    assert report["confusion"] == metrics([r["label"] for r in rows], [w["state"] for w in written])["confusion"]

"""`duo eval`: state decisions on a JSONL file, through the engine's own forecast path, plus baselines.

Rows: `{"history": [{"role": "user"|"assistant", "content": str}, ...], "input": str,
"label": "process"|"ignore"|"incomplete"}`. The tuned model is judged by the engine itself: one session per
row (history as its prefix), the input pushed as one final slice, the state read from the `StateDecided`
event with the session's thresholds — the same framing, tokens and decision rule as at run time. Many
sessions share each tick, so one forward pass judges a whole batch. Baselines (paper Table 3's
non-duplex rows) prompt the untuned model to classify, zero-shot or with five examples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from .replies import plain_attention
from .sources import IGNORE, INCOMPLETE, LABELS, PROCESS


class EvalDataError(ValueError):
    """The evaluation file is not in the documented format."""


def load_rows(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise EvalDataError(f"{where}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise EvalDataError(f"{where}: expected a JSON object")
        history, text, label = row.get("history", []), row.get("input"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise EvalDataError(f"{where}: 'input' must be a non-empty string")
        if label not in LABELS:
            raise EvalDataError(f"{where}: 'label' must be one of {', '.join(LABELS)}, got {label!r}")
        if not isinstance(history, list) or len(history) % 2:
            raise EvalDataError(f"{where}: 'history' must be a list of user/assistant pairs")
        for i, turn in enumerate(history):
            role = "user" if i % 2 == 0 else "assistant"
            if not isinstance(turn, dict) or turn.get("role") != role or not isinstance(turn.get("content"), str):
                raise EvalDataError(f"{where}: history[{i}] must be {{'role': '{role}', 'content': str}}")
        rows.append({"history": history, "input": text, "label": label})
    if not rows:
        raise EvalDataError(f"{path}: no rows")
    return rows


def metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    """P/R/F1 with `process` positive against `ignore` (rows labelled process or ignore), plus 3-way stats."""
    if len(gold) != len(pred):
        raise ValueError("gold and predictions differ in length")
    binary = [(g, p) for g, p in zip(gold, pred, strict=True) if g in (PROCESS, IGNORE)]
    tp = sum(g == PROCESS and p == PROCESS for g, p in binary)
    fp = sum(g == IGNORE and p == PROCESS for g, p in binary)
    fn = sum(g == PROCESS and p != PROCESS for g, p in binary)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    confusion = {g: {p: 0 for p in LABELS} for g in LABELS}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    per_label = {g: (confusion[g][g] / sum(confusion[g].values()) if sum(confusion[g].values()) else None)
                 for g in LABELS}
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1,
            "accuracy": 100 * sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold)),
            "recall_per_label": {k: None if v is None else 100 * v for k, v in per_label.items()},
            "confusion": confusion, "n": len(gold)}


def engine_decisions(backbone: Any, rows: list[dict[str, Any]], thresholds: Any, batch: int = 64,
                     progress: bool = True) -> list[tuple[str, dict[str, float]]]:
    """(state, probabilities) per row, decided by the engine's forecast path, `batch` sessions per tick."""
    from tqdm import tqdm

    from duo.engine.config import EngineConfig, SessionConfig
    from duo.engine.events import Error, StateDecided
    from duo.engine.llm_engine import Engine

    engine = Engine(backbone, EngineConfig(max_sessions=max(batch, 1)))
    config = SessionConfig(forecast_tokens=1, thresholds=thresholds)
    out: list[tuple[str, dict[str, float]] | None] = [None] * len(rows)
    bar = tqdm(total=len(rows), desc="eval", unit="row", disable=not progress)
    for start in range(0, len(rows), batch):
        pending: dict[str, int] = {}
        for i in range(start, min(start + batch, len(rows))):
            session = engine.open_session(config, history=rows[i]["history"])
            session.push_slice(rows[i]["input"], final=True)
            pending[session.id] = i
        while pending:
            for event in engine.step():
                if isinstance(event, StateDecided) and event.session_id in pending:
                    probs = {str(s.value): float(p) for s, p in event.probs.items()}
                    out[pending.pop(event.session_id)] = (str(event.state.value), probs)
                    engine.close_session(event.session_id)
                    bar.update(1)
                elif isinstance(event, Error) and event.session_id in pending:
                    raise RuntimeError(f"row {pending[event.session_id]}: engine error {event.code}: {event.message}")
        while engine.sessions or engine.has_work():
            engine.step()
    bar.close()
    assert all(o is not None for o in out)
    return [o for o in out if o is not None]


CLASSIFY = (
    "You hear everything said near a voice assistant. Decide what the assistant should do with the latest "
    "speech. Answer with one letter. A: it is a complete request or question addressed to the assistant. "
    "B: it is not addressed to the assistant (news, quotes, narration, people talking to each other). "
    "C: it is a request to the assistant that is not finished yet."
)
LETTERS = {PROCESS: "A", IGNORE: "B", INCOMPLETE: "C"}


def pick_shots(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Five examples as in the paper's baseline: mostly process and ignore, plus one unfinished request."""
    rng = random.Random(seed)
    wanted = [PROCESS, IGNORE, PROCESS, IGNORE, INCOMPLETE]
    shots = []
    for label in wanted:
        pool = [r for r in rows if r["label"] == label and r not in shots]
        if not pool:
            raise EvalDataError(f"no {label!r} row to use as an example")
        shots.append(rng.choice(pool))
    return shots


def prompt_decisions(backbone: Any, rows: list[dict[str, Any]], shots: list[dict[str, Any]], thresholds: Any,
                     batch: int = 32, progress: bool = True) -> list[tuple[str, dict[str, float]]]:
    """The untuned model prompted to classify; P(A/B/C) of its first answer token, same thresholds."""
    import torch
    from tqdm import tqdm

    from duo.engine.config import State

    tok, model = backbone.tokenizer, backbone.model
    letter_ids = {label: tok.encode(letter, add_special_tokens=False) for label, letter in LETTERS.items()}
    if any(len(v) != 1 for v in letter_ids.values()):
        raise ValueError("the answer letters are not single tokens for this tokenizer")
    messages = [{"role": "system", "content": CLASSIFY}]
    for shot in shots:
        messages += [{"role": "user", "content": f"Speech: \"{shot['input']}\""},
                     {"role": "assistant", "content": LETTERS[shot["label"]]}]
    prompts = [tok.apply_chat_template([*messages, {"role": "user", "content": f"Speech: \"{r['input']}\""}],
                                       tokenize=False, add_generation_prompt=True) for r in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    columns = [letter_ids[label][0] for label in LABELS]
    out = []
    with plain_attention(model), torch.no_grad():
        for start in tqdm(range(0, len(rows), batch), desc="baseline", unit="batch", disable=not progress):
            ids = [tok.encode(p, add_special_tokens=False) for p in prompts[start : start + batch]]
            width = max(map(len, ids))
            x = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=backbone.device)
            mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=backbone.device)
            logits = model(input_ids=x, attention_mask=mask).logits[:, -1, columns].float()
            for p in logits.softmax(-1).tolist():
                probs = {State(label): v for label, v in zip(LABELS, p, strict=True)}
                out.append((str(thresholds.decide(probs).value), {str(k.value): v for k, v in probs.items()}))
    return out


def format_report(name: str, m: dict[str, Any]) -> str:
    lines = [f"{name}: n={m['n']}  precision={m['precision']:.2f}  recall={m['recall']:.2f}  f1={m['f1']:.2f}  "
             f"accuracy={m['accuracy']:.2f}",
             "  recall per label: " + "  ".join(f"{k}={'-' if v is None else f'{v:.1f}'}"
                                                for k, v in m["recall_per_label"].items()),
             "  confusion (rows gold, columns predicted): " + "  ".join(LABELS)]
    for gold in LABELS:
        lines.append(f"    {gold:>10}: " + "  ".join(f"{m['confusion'][gold][p]:>{len(p)}}" for p in LABELS))
    return "\n".join(lines)


def plot_confusion(m: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [[m["confusion"][g][p] for p in LABELS] for g in LABELS]
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(3), LABELS)
    ax.set_yticks(range(3), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = max(max(r) for r in grid) or 1
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    ax.set_title(f"{title}\nF1 {m['f1']:.1f}, accuracy {m['accuracy']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

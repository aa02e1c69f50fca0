"""A timeline per scenario (PNG): who spoke, what the server heard and decided, and what the user heard back,
one panel per turn-detection mode on the same time axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import playback

ROLE_COLORS = {"query": "#1f77b4", "interrupt": "#9467bd", "background": "#8c8c8c", "pause": "#f2e394"}
STATE_STYLE = {"process": ("#2ca02c", "^"), "ignore": ("#7f7f7f", "x"), "incomplete": ("#ff7f0e", "o")}
STATUS_COLORS = {"completed": "#2ca02c", "cancelled": "#d62728", "incomplete": "#ff7f0e", None: "#1f77b4"}
ROWS = {"user": 3, "heard": 2, "state": 1, "reply": 0}


def _vad_spans(record: dict[str, Any]) -> list[tuple[float, float]]:
    spans, start = [], None
    for e in record["events"]:
        if e["type"] == "input_audio_buffer.speech_started":
            start = e.get("audio_start_ms", e["t"] * 1000) / 1000
        elif e["type"] == "input_audio_buffer.speech_stopped" and start is not None:
            spans.append((start, e.get("audio_end_ms", e["t"] * 1000) / 1000))
            start = None
    if start is not None:
        spans.append((start, record["end"]))
    return spans


def _panel(ax: Any, record: dict[str, Any], x_max: float) -> None:
    for s in record["segments"]:
        h, y = (0.25, ROWS["user"] - 0.35) if s.get("layer") else (0.5, ROWS["user"] - 0.25)
        ax.broken_barh([(s["start"], s["end"] - s["start"])], (y, h), color=ROLE_COLORS.get(s["role"], "#ccc"),
                       alpha=0.5 if s.get("layer") else 0.9)
    for a, b in _vad_spans(record):
        ax.broken_barh([(a, b - a)], (ROWS["heard"] - 0.2, 0.4), color="#17becf")
    for e in record["events"]:
        if e["type"] == "duo.input.state":
            color, marker = STATE_STYLE.get(e.get("state"), ("k", "."))
            ax.scatter([e["t"]], [ROWS["state"]], color=color, marker=marker, s=60,
                       facecolors="none" if e.get("held") and marker != "x" else color)
        elif e["type"] == "conversation.item.input_audio_transcription.completed":
            ax.scatter([e["t"]], [ROWS["heard"] + 0.3], color="#17becf", marker="v", s=25)
    for r in playback.replies(record):
        end = min(r.end, record["end"])
        ax.broken_barh([(r.created, max(0.02, end - r.created))], (ROWS["reply"] + 0.05, 0.35),
                       color=STATUS_COLORS.get(r.status, "#1f77b4"), alpha=0.85)
        heard_from = r.first_audio if r.first_audio is not None else r.first_token if r.audio_end else None
        if heard_from is not None:  # text-only replies: as the client reads them out (see playback)
            stop = min(end, r.audio_end or end)
            ax.broken_barh([(heard_from, max(0.02, stop - heard_from))], (ROWS["reply"] - 0.4, 0.35),
                           color="#bcbd22")
        if r.first_token is not None:
            ax.plot([r.first_token] * 2, [ROWS["reply"], ROWS["reply"] + 0.45], color="k", lw=1.5)
        if r.stopped is not None:
            ax.scatter([r.stopped], [ROWS["reply"]], color="#d62728", marker="X", s=80, zorder=5)
    out = record.get("outcome", {})
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}[out.get("passed")]
    ax.set_title(f"{record['mode']}: {verdict} — {out.get('reason', '')}", fontsize=9, loc="left")
    ax.set_yticks(list(ROWS.values()), ["user", "server heard", "DUO state", "reply (gen / audio)"], fontsize=8)
    ax.set_ylim(-0.6, 3.5)
    ax.set_xlim(0, x_max)
    ax.grid(axis="x", alpha=0.3)


def plot_scenario(records: list[dict[str, Any]], path: Path) -> Path:
    """One PNG for one scenario's runs (one panel per mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    x_max = max(r["end"] for r in records) + 0.5
    fig, axes = plt.subplots(len(records), 1, figsize=(12, 2.3 * len(records) + 0.8), sharex=True, squeeze=False)
    for ax, record in zip(axes[:, 0], records, strict=True):
        _panel(ax, record, x_max)
    axes[-1, 0].set_xlabel("seconds (scenario clock)")
    first = records[0]
    fig.suptitle(f"{first['id']} — expect {first['expect']}", fontsize=11, x=0.01, ha="left")
    handles = [Patch(color=c, label=k) for k, c in ROLE_COLORS.items()]
    handles += [Patch(color="#17becf", label="VAD speech"), Patch(color="#bcbd22", label="reply audio"),
                Patch(color="#2ca02c", label="reply completed"), Patch(color="#ff7f0e", label="reply at token limit"),
                Patch(color="#d62728", label="reply cancelled")]
    fig.legend(handles=handles, loc="upper right", ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_report(report: dict[str, Any], folder: Path) -> list[Path]:
    """A PNG per scenario of the report, named after it."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for run in report["runs"]:
        by_id.setdefault(run["id"], []).append(run)
    return [plot_scenario(runs, folder / f"{sid}.png") for sid, runs in by_id.items()]

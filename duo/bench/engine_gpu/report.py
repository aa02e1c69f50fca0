"""What a bench prints: one JSON object per measurement as it is made, then a table per bench."""

from __future__ import annotations

import json


def emit(row: dict) -> dict:
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> None:
    print()
    for bench in dict.fromkeys(r["bench"] for r in rows):
        sel = [r for r in rows if r["bench"] == bench]
        keys = list(dict.fromkeys(k for r in sel for k in r if k != "bench"))
        print(f"[{bench}]")
        print("  " + " | ".join(keys))
        for r in sel:
            print("  " + " | ".join(str(r.get(k, "")) for k in keys))

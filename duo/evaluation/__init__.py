"""Duplex behaviour evaluation: spoken scenarios replayed through the live server, judged and timed.

Does duo answer when spoken to, stay quiet when people talk around it, wait while the user pauses mid-sentence,
stop when interrupted, and how fast? `docs/evaluation.md` describes the scenarios, the metrics and the results.
"""

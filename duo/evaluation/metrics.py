"""What a recorded run shows: each scenario's outcome, judged from what the client heard.

A run record is plain JSON (what the client recorded, or a hand-written timeline in the tests):
`{"id", "expect", "mode", "speed", "within_s", "segments": [{"role", "start", "end", "label", "layer"?}],
"events": [{"t", "type", ...}], "end", "server_counters"?}`, every time in seconds on the scenario clock; the
server's counts of early closes and withdrawn replies over the run (`counters.py`) pass into its outcome.
The replies as the user heard them (playback, and when the client stopped each) are `playback.py`'s; the
figures over a set of runs, `summary.py`'s.
"""

from __future__ import annotations

from typing import Any

from .playback import AUDIO_EVENT, INF, TEXT_CHARS_PER_S, TOKEN_EVENTS, Reply, heard_by_user, replies
from .summary import stats, summarize

__all__ = ["AUDIO_EVENT", "INF", "TEXT_CHARS_PER_S", "TOKEN_EVENTS", "TRANSCRIPT", "TRANSCRIPT_DELTA", "Reply",
           "answers_whole", "evaluate", "final_utterance", "heard_by_user", "replies", "settled", "stats",
           "summarize", "trigger_utterance"]


def _main_segments(record: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for s in record["segments"] if s["role"] == role and not s.get("layer")]


def _latencies(out: dict[str, Any], answer: Reply | None, end_of_query: float) -> None:
    if answer is None:
        return
    out["answer_id"] = answer.id
    if answer.first_token is not None:
        out["latency_token_s"] = round(answer.first_token - end_of_query, 3)
    if answer.first_audio is not None:
        out["latency_audio_s"] = round(answer.first_audio - end_of_query, 3)


def _ducked(out: dict[str, Any], record: dict[str, Any], live: Reply, onset: float) -> None:
    """Speech began over a spoken reply: when the server ducked it (`duo.*` events; DUO only)."""
    duck = next((e["t"] for e in record["events"] if e["type"] == DUCK and e.get("response_id") == live.id
                 and e["t"] >= onset), None)
    if duck is not None:
        out["duck_s"] = round(duck - onset, 3)


DUCK = "duo.output_audio.duck"
SPEECH_STARTED = "input_audio_buffer.speech_started"
TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
TRANSCRIPT_DELTA = "conversation.item.input_audio_transcription.delta"


def final_utterance(record: dict[str, Any], q_end: float) -> int:
    """Index of the utterance holding the end of the query, in the order the server heard utterances start."""
    return sum(1 for e in record["events"] if e["type"] == "input_audio_buffer.speech_started"
               and e.get("audio_start_ms", e["t"] * 1000) / 1000 < q_end) - 1


def trigger_utterance(record: dict[str, Any], reply: Reply) -> int | None:
    """Index of the utterance whose recognition started `reply` (None if no speech preceded it).

    The item that started it names the utterance: under DUO the item of the `process` decision before the
    reply, under server_vad the item of the transcript before it; its index is where its newest
    `speech_started` stands among the utterances the server heard start (speech that resumes after a pause
    joins the same item and starts again). An item the server opened mid-speech, after dropping the one its
    onset went to (ignored), belongs to the newest utterance started before its first event. Without item
    ids (an older server), transcripts are counted instead: each non-empty utterance ends with one, so the
    k-th belongs to the k-th utterance (speech recognized as no words, or ignored and dropped, leaves none,
    and then the count is off).
    """
    events = sorted(record["events"], key=lambda e: e["t"])  # stable: same-time events keep arrival order
    at = next((i for i, e in enumerate(events) if e["type"] == "response.created"
               and e.get("response_id") == reply.id), len(events))
    starts = [e.get("item_id") for e in events[:at] if e["type"] == SPEECH_STARTED]
    trigger = None
    if record.get("mode") == "duo":
        trigger = next((i for i in range(at - 1, -1, -1) if events[i]["type"] == "duo.input.state"
                        and events[i].get("state") == "process"), None)
    if trigger is None:
        trigger = next((i for i in range(at - 1, -1, -1) if events[i]["type"] == TRANSCRIPT), None)
    item = events[trigger].get("item_id") if trigger is not None else None
    if item is None and trigger is not None and events[trigger]["type"] == "duo.input.state":
        # judged on a partial before its item was opened (the item its onset went to had been dropped as
        # `ignore`): the item is the next one the server names before the reply
        item = next((e["item_id"] for e in events[trigger + 1 : at] if e.get("item_id")
                     and e["type"] in (SPEECH_STARTED, TRANSCRIPT_DELTA, TRANSCRIPT)), None)
    if item is not None and item in starts:
        return len(starts) - 1 - starts[::-1].index(item)
    if item is not None and starts:
        first = next(i for i, e in enumerate(events) if e.get("item_id") == item)
        return sum(1 for e in events[:first] if e["type"] == "input_audio_buffer.speech_started") - 1
    if trigger is not None and events[trigger]["type"] == "duo.input.state":
        text = str(events[trigger].get("slice_text", "")).strip()
        delta = next((i for i in range(trigger, -1, -1) if events[i]["type"] == TRANSCRIPT_DELTA
                      and str(events[i].get("delta", "")).strip() == text), None)
        if delta is not None:
            return sum(1 for e in events[:delta] if e["type"] == TRANSCRIPT)
    done = sum(1 for e in events[:at] if e["type"] == TRANSCRIPT)
    return done - 1 if done else None


def answers_whole(record: dict[str, Any], reply: Reply, q_end: float) -> bool:
    """The reply was started by the end of the query, not by earlier speech (its first half, or talk before it).

    Timing alone cannot tell: a slow recognizer can push a reply to the first half past the end of the second.
    """
    u = trigger_utterance(record, reply)
    return u is not None and u >= final_utterance(record, q_end)


def evaluate(record: dict[str, Any]) -> dict[str, Any]:
    """The scenario's outcome: `passed` (None when the run could not show it), `reason`, and its figures."""
    kind, within = record["expect"], float(record.get("within_s", 5.0))
    rs = replies(record)
    out: dict[str, Any] = {"passed": None, "reason": ""}
    if record.get("server_counters") is not None:  # what the server counted of DUO's early turn-taking
        out["server_counters"] = record["server_counters"]
    queries = _main_segments(record, "query")
    if kind in ("respond", "wait"):
        q_start, q_end = queries[0]["start"], queries[-1]["end"]
        answer = next((r for r in rs if answers_whole(record, r, q_end)), None)
        early = [r for r in rs if r is not answer and (answer is None or r.created < answer.created)]
        _latencies(out, answer, q_end)
        heard = next((e["t"] for e in record["events"] if e["type"] == TRANSCRIPT and e["t"] >= q_end), None)
        if heard is not None:  # the words recognized: what DUO's last judgement and any reply wait for
            out["transcript_s"] = round(heard - q_end, 3)
        answered = answer is not None and answer.created <= q_end + within
        if kind == "wait":
            inside = [r for r in early if r.created >= q_start]
            out["takeover"] = bool(inside)
            out["answered"] = answered
            out["passed"] = not inside
            out["reason"] = (f"a reply to the unfinished query started at {inside[0].created:.2f} s"
                             if inside else "waited for the end")
        elif early:
            out["passed"] = False
            out["reason"] = f"a reply to earlier speech started at {early[0].created:.2f} s"
        else:
            out["passed"] = answered
            out["reason"] = "answered" if answered else (
                f"answer came {answer.created - q_end:.2f} s after the query" if answer else "no reply")
    elif kind == "no_response":
        out["takeover"] = bool(rs)
        out["passed"] = not rs
        out["reason"] = f"a reply started at {rs[0].created:.2f} s" if rs else "stayed quiet"
    elif kind == "interrupt":
        inter = _main_segments(record, "interrupt")[0]
        live = next((r for r in rs if r.live_at(inter["start"])), None)
        if live is None:
            out["reason"] = "no reply was playing when the interruption began"
            return out
        answer = next((r for r in rs if r.created > inter["start"] and r is not live), None)
        _latencies(out, answer, inter["end"])
        answered = answer is not None and answer.created <= inter["end"] + within
        out["answered"] = answered
        _ducked(out, record, live, inter["start"])
        if live.stopped is not None:
            out["barge_in_s"] = round(live.stopped - inter["start"], 3)
            # from the end of the interrupting words (Full-Duplex-Bench's reference point); 0 when sooner
            out["silenced_s"] = round(max(0.0, live.stopped - inter["end"]), 3)
            out["passed"] = answered
            out["reason"] = "stopped and answered" if answered else "stopped, but the new query got no reply"
        elif live.natural_end < inter["end"]:
            out["reason"] = "the reply ended on its own while the interruption was spoken"
        else:
            out["passed"], out["reason"] = False, "kept talking over the interruption"
    elif kind == "no_interrupt":
        bg = next(s for s in _main_segments(record, "background") if s["start"] >= queries[-1]["end"])
        live = next((r for r in rs if r.live_at(bg["start"])), None)
        if live is None:
            out["reason"] = "no reply was playing when the background speech began"
            return out
        _ducked(out, record, live, bg["start"])
        out["false_interruption"] = live.stopped is not None
        out["takeover"] = any(r.created > bg["start"] for r in rs if r is not live)
        out["passed"] = not out["false_interruption"] and not out["takeover"]
        out["reason"] = ("stopped by background speech" if out["false_interruption"] else
                         "answered the background speech" if out["takeover"] else "kept talking")
    return out


def settled(record: dict[str, Any], now: float) -> bool:
    """True once listening longer cannot change the outcome (the client then ends the scenario)."""
    kind, within = record["expect"], float(record.get("within_s", 5.0))
    segs = [s for s in record["segments"] if not s.get("layer")]
    if not segs:
        return False
    last = max(s["end"] for s in segs)
    rs = replies(record)
    if kind in ("respond", "wait", "interrupt"):
        ref = _main_segments(record, "interrupt" if kind == "interrupt" else "query")
        start, end = ref[-1]["start"], ref[-1]["end"]
        answers = [r for r in rs if (r.created > start if kind == "interrupt" else answers_whole(record, r, end))]
        if any(heard_by_user(r, record) for r in answers):
            return True
        return now >= end + within and not answers  # a reply on its way is waited for (audio latency)
    if kind == "no_response":
        return now >= last + within
    # no_interrupt: the reply played out (or was stopped) and the background had its chance
    return now >= last + within and all(r.end <= now for r in rs)

"""The server's counts of early closes and withdrawn replies, read from its real Prometheus exposition, per run
and over a report."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from duo.evaluation import counters, metrics
from duo.evaluation.cli import format_summary
from duo.evaluation.runner import rejudge
from duo.server.metrics import Metrics


def exported(early: int, resumed: int, withdrawn: int, tokens: int) -> Metrics:
    m = Metrics()
    m.early_closes.inc(early)
    m.early_closes_resumed.inc(resumed)
    m.withdrawn_replies.inc(withdrawn)
    m.discarded_tokens.inc(tokens)
    return m


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    """A server's metrics on a real HTTP `/metrics`, and the realtime URL beside it."""
    m = exported(0, 0, 0, 0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = m.render() if self.path == "/metrics" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield m, f"ws://127.0.0.1:{http.server_address[1]}/v1/realtime"
    http.shutdown()
    http.server_close()


def test_the_counters_are_read_from_the_exposition() -> None:
    assert counters.parse(exported(4, 1, 2, 37).render().decode()) == {
        "early_closes": 4.0, "early_closes_resumed": 1.0, "withdrawn_replies": 2.0, "discarded_tokens": 37.0}
    assert counters.parse("") == dict.fromkeys(counters.COUNTERS, 0.0)
    assert counters.metrics_url("ws://h:8000/v1/realtime") == "http://h:8000/metrics"
    assert counters.metrics_url("wss://h/v1/realtime?model=x") == "https://h/metrics"


async def test_a_run_counts_what_the_server_counted_during_it(served: tuple[Metrics, str]) -> None:
    m, url = served
    before = await counters.read(url)
    m.early_closes.inc(3)
    m.early_closes_resumed.inc(1)
    m.withdrawn_replies.inc(2)
    m.discarded_tokens.inc(19)
    assert counters.delta(before, await counters.read(url)) == {
        "early_closes": 3, "early_closes_resumed": 1, "withdrawn_replies": 2, "discarded_tokens": 19}
    assert await counters.read(url.replace("/v1/realtime", "/nothing")) is not None  # /metrics beside any path
    assert counters.delta(before, None) is None


async def test_a_server_without_metrics_leaves_the_counts_out() -> None:
    assert await counters.read("ws://127.0.0.1:9/v1/realtime", timeout_s=2) is None  # nothing listens


def _run(mode: str, counted: dict[str, int] | None) -> dict:
    return {"id": "x", "expect": "no_response", "mode": mode, "speed": 1.0, "within_s": 5.0, "output": "audio",
            "segments": [{"role": "background", "start": 0.5, "end": 2.0, "label": "b"}], "events": [], "end": 8.0,
            **({"server_counters": counted} if counted is not None else {})}


def test_the_summary_gives_the_early_close_rate_and_the_withdrawn_replies() -> None:
    runs = [_run("duo", {"early_closes": 3, "early_closes_resumed": 1, "withdrawn_replies": 2,
                         "discarded_tokens": 19}),
            _run("duo", {"early_closes": 1, "early_closes_resumed": 1, "withdrawn_replies": 1,
                         "discarded_tokens": 5}),
            _run("server_vad", dict.fromkeys(counters.COUNTERS, 0)),
            _run("server_vad", None)]  # an errored run: not counted
    report = {"runs": runs, "server": {"url": "ws://h/v1/realtime"}, "settings": {"speed": 1.0},
              "duration_s": 1.0, "server_counters": counters.total([{"early_closes": 4, "early_closes_resumed": 2,
                                                                     "withdrawn_replies": 3,
                                                                     "discarded_tokens": 24}])}
    summary = rejudge(report)["summary"]
    assert summary["duo"]["server_counters"] == {"early_closes": 4, "early_closes_resumed": 2,
                                                 "early_close_resumed_rate": 0.5, "withdrawn_replies": 3,
                                                 "discarded_tokens": 24, "runs": 2}
    assert summary["server_vad"]["server_counters"] == {**dict.fromkeys(counters.COUNTERS, 0), "runs": 1,
                                                        "early_close_resumed_rate": None}
    assert metrics.summarize([{"expect": "respond", "passed": True}])["server_counters"] is None  # overlapping runs
    assert report["server_counters"]["early_close_resumed_rate"] == 0.5
    table = format_summary(report)
    assert "early closes resumed" in table and "2 / 4 (50 %)" in table and "3 (24 tokens)" in table
    assert "server counters over every run" in table


def test_judging_a_report_again_keeps_a_run_that_broke_off() -> None:
    broke = {"id": "r", "expect": "respond", "mode": "duo", "speed": 1.0, "within_s": 5.0, "output": "audio",
             "segments": [], "events": [], "end": 0.0,
             "outcome": {"expect": "respond", "passed": None, "reason": "error: ConnectionError: refused"}}
    report = {"runs": [broke, _run("duo", None)], "server": {"url": "ws://h/v1/realtime"},
              "settings": {"speed": 1.0}, "duration_s": 1.0, "server_counters": None}
    judged = rejudge(report)
    assert judged["runs"][0]["outcome"]["reason"] == "error: ConnectionError: refused"
    assert judged["runs"][1]["outcome"]["passed"] is True  # nothing answered the background speech
    assert (judged["summary"]["duo"]["scenarios"], judged["summary"]["duo"]["measured"]) == (2, 1)

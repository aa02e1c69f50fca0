"""The demo page's player (`static/js/player.js`) in a real headless Chromium with a real AudioContext: a
reply's first chunk plays a short lead after it arrives, chunks join back to back, and the lead grows after
an underrun (only then) and shrinks again with new items."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import duo.server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
STATIC = Path(duo.server.__file__).resolve().parent / "static"
ORIGIN = "http://duo.test"
PAGE = """<!doctype html><script type="module">
import { Player, LEAD_MS } from "./js/player.js";
import { loadSettings } from "./js/settings.js";
window.loadSettings = loadSettings;
window.ctx = new AudioContext();
window.player = new Player(() => window.ctx);
window.LEAD_MS = LEAD_MS;
/** Queue `n` chunks of 100 ms; returns how far ahead of the clock (read before) the first one starts. */
window.queue = (item, n = 1) => {
  const before = window.ctx.currentTime;
  const count = window.player.segments.length;
  for (let i = 0; i < n; i++) window.player.enqueue(item, new Int16Array(2400).fill(1000));
  return window.player.segments[count].start - before;
};
window.sleepUntil = (t) => new Promise((ok) => {
  const tick = () => (window.ctx.currentTime >= t ? ok() : setTimeout(tick, 5));
  tick();
});
window.ready = true;
</script>"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        try:
            page = chromium.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def serve(route: Any) -> None:
                path = route.request.url.removeprefix(ORIGIN + "/")
                if path == "player.html":
                    route.fulfill(body=PAGE, content_type="text/html")
                else:
                    route.fulfill(path=str(STATIC / path), content_type="text/javascript")

            page.route(ORIGIN + "/**", serve)
            page.goto(ORIGIN + "/player.html")
            page.wait_for_function("window.ready === true && window.ctx.state === 'running'", timeout=10_000)
            yield page
            assert not errors
        finally:
            chromium.close()


def test_the_first_chunk_plays_a_short_lead_after_it_arrives(page: Any) -> None:
    assert page.evaluate("window.LEAD_MS") == 60
    ahead = page.evaluate("window.queue('item_1', 3)")
    assert 0.059 <= ahead < 0.08  # 60 ms, not a fixed buffer of audio (the old 120 ms)
    starts = page.evaluate("window.player.segments.map((s) => s.start)")
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([0.1, 0.1], abs=1e-6)
    assert page.evaluate("window.player.underruns") == 0


def test_the_lead_is_a_page_setting(page: Any) -> None:
    assert page.evaluate("window.loadSettings().playbackLeadMs") == 60
    page.evaluate("localStorage.setItem('duo.settings.v1', JSON.stringify({playbackLeadMs: 5}))")
    assert page.evaluate("window.loadSettings().playbackLeadMs") == 20  # clamped to the form's bounds
    page.evaluate("localStorage.clear()")


def test_the_lead_grows_after_an_underrun_and_shrinks_with_new_items(page: Any) -> None:
    page.evaluate("window.player.flush()")
    page.evaluate("window.queue('item_2')")
    end = page.evaluate("window.player.nextTime")
    page.evaluate(f"window.sleepUntil({end} + 0.05)")  # the queue ran dry 50 ms before the next chunk came
    ahead = page.evaluate("window.queue('item_2')")
    assert page.evaluate("window.player.underruns") == 1 and 0.079 <= ahead < 0.10  # one step more
    end = page.evaluate("window.player.nextTime")
    page.evaluate(f"window.sleepUntil({end} + 0.4)")  # a pause in the reply's text: more lead would not help
    ahead = page.evaluate("window.queue('item_2')")
    assert page.evaluate("window.player.underruns") == 1 and 0.079 <= ahead < 0.10
    page.evaluate("window.player.flush()")
    assert page.evaluate("window.queue('item_3')") == pytest.approx(0.07, abs=0.02)  # half a step back
    assert page.evaluate("window.player.lead") == pytest.approx(0.07)
    page.evaluate("window.player.setLead(30)")
    page.evaluate("window.player.flush()")
    assert 0.029 <= page.evaluate("window.queue('item_4')") < 0.05

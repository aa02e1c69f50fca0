"""What every client driver shares (standard library only: each runs in its client's own environment).

A driver gets its configuration as JSON in argv[1] (server URL, API key, speech files), runs each
scenario against the live server with the real client library, and prints one JSON line per scenario
with what the client saw. `checkpoint` lets the test inspect the server mid-scenario: the driver prints
a line and waits for the test to answer on stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

RATE = 24_000  # the speech files: PCM16 mono at the Realtime default rate


def config() -> dict[str, Any]:
    return json.loads(sys.argv[1])


def checkpoint(name: str) -> None:
    print(json.dumps({"checkpoint": name}), flush=True)
    sys.stdin.readline()


def speech(name: str, ms: int = 100) -> Iterator[bytes]:
    """A speech file of the configuration in `ms` chunks (trailing silence included)."""
    with open(config()["speech"][name], "rb") as f:
        data = f.read()
    step = RATE * 2 * ms // 1000
    for i in range(0, len(data), step):
        yield data[i : i + step]


async def stream(send: Callable[[bytes], Awaitable[Any]], name: str, pace: float = 0.5) -> None:
    """Send a speech file at `1 / pace` times real time (a microphone is real time; faster saves test time)."""
    for chunk in speech(name):
        await send(chunk)
        await asyncio.sleep(0.1 * pace)


async def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def run(scenarios: dict[str, Callable[[], Awaitable[dict[str, Any]]]], timeout: float = 120.0) -> None:
    """Run the scenarios named in the configuration (all by default), one JSON line each."""
    wanted = config().get("scenarios") or list(scenarios)

    async def main() -> None:
        for name in wanted:
            try:
                result = await asyncio.wait_for(scenarios[name](), timeout)
            except BaseException as exc:  # the scenario failed: its line says how, the next one runs
                result = {"failed": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
            print(json.dumps({"scenario": name, **result}, default=str), flush=True)

    asyncio.run(main())

"""Every parse path answers with an `error` and the session goes on: odd types, deep nesting, numbers out of
range (refused, not clamped), bad truncate indices, binary frames that are not UTF-8."""

from __future__ import annotations

import asyncio

from .helpers import connect, live_server

DEEP = "[" * 100_000 + "]" * 100_000

BAD = [  # (frame, code, param)
    ('{"type": []}', "invalid_event", "type"),
    ('{"type": {"a": 1}}', "invalid_event", "type"),
    ('{"type": null}', "invalid_event", "type"),
    ('{"type": 5}', "invalid_event", "type"),
    ("[" * 1000 + "]" * 1000, "invalid_json", None),
    (DEEP, "invalid_json", None),
    ('{"type": "response.create", "response": {"a": ' + DEEP + "}}", "invalid_json", None),
    ('{"type": "session.update", "session": {"temperature": NaN}}', "invalid_json", None),
    ('{"type": "session.update", "session": {"temperature": 1e999}}', "invalid_json", None),
    # a session.update applies what it can and names the field it left out
    ('{"type": "session.update", "session": {"max_output_tokens": ' + str(10**30) + "}}", "invalid_value",
     "session.max_output_tokens"),
    ('{"type": "session.update", "session": {"max_output_tokens": 0}}', "invalid_value",
     "session.max_output_tokens"),
    ('{"type": "session.update", "session": {"max_response_output_tokens": 5000}}', "invalid_value",
     "session.max_response_output_tokens"),
    ('{"type": "conversation.item.truncate", "item_id": "x", "content_index": -5, "audio_end_ms": 0}',
     "invalid_event", "content_index"),
    ('{"type": "conversation.item.truncate", "item_id": "x", "content_index": 1, "audio_end_ms": 0}',
     "invalid_event", "content_index"),
    ('{"type": "' + "x" * 100_000 + '"}', "unknown_event", "type"),
    (b'{"type": "\xff"}', "invalid_json", None),  # a binary frame that is not UTF-8
]


def test_bad_messages_get_an_error_each_and_the_session_goes_on(tiny) -> None:
    with live_server(tiny) as s:
        async def run() -> None:
            c = await connect(s.url)
            for frame, _, _ in BAD:
                await c.ws.send(frame)
            errors = [(await c.until("error"))["error"] for _ in BAD]
            assert [(e["code"], e.get("param")) for e in errors] == [(code, param) for _, code, param in BAD]
            assert all(len(e["message"]) < 500 for e in errors)  # what provoked it is not echoed whole
            assert "out of range" in errors[9]["message"]
            limit = c.events[0]["session"]["max_output_tokens"]  # session.created's: nothing was clamped and applied
            assert all(e["session"]["max_output_tokens"] == limit for e in c.events if e["type"] == "session.updated")
            await c.configure(max_tokens=3, process_threshold=0.0)  # waits for its `session.updated`
            await c.say("hello")
            assert (await c.until("response.done"))["response"]["status"] in ("completed", "incomplete")
            await c.ws.close()

        asyncio.run(run())

"""Parsing one client frame into its typed event, or a `ProtocolError` that names what was wrong.

Every check comes before the work it protects: UTF-8, then nesting depth (before `json.loads`, which a deep
enough document would exhaust), then JSON that is finite numbers only, then the event's type, then its model.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from .client_events import CLIENT_EVENT_TYPES, client_event_adapter
from .wire import MAX_DEPTH, MAX_ID, short


class ProtocolError(Exception):
    """A client event that cannot be applied; the session goes on."""

    def __init__(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.event_id, self.param = code, message, event_id, param


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {short(text)}")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` in `text`, found without parsing it.

    Checked before `json.loads`, whose recursion a deep enough document exhausts. Brackets inside strings
    do not count; an unbalanced text may count deeper than it is, which only refuses it sooner (it is not
    JSON either way).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for ch in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > limit:
            return True
    return False


def parse_client_event(raw: str | bytes) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid_json", f"not valid JSON: not UTF-8 ({exc.reason})") from None
    if too_deep(raw):
        raise ProtocolError("invalid_json", f"not valid JSON here: nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {short(str(exc), 200)}") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "an event is a JSON object")
    event_id = data.get("event_id")
    event_id = event_id if isinstance(event_id, str) and len(event_id) <= MAX_ID else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_event", f"an event's type is a string, not {short(json.dumps(kind))}",
                            event_id, "type")
    if kind not in CLIENT_EVENT_TYPES:
        raise ProtocolError("unknown_event", f"unknown event type {short(repr(kind))}", event_id, "type")
    try:
        return client_event_adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ProtocolError("invalid_event", f"{kind}: {where}: {first['msg']}", event_id, where or None) from None

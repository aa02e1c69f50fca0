"""Ids of sessions, items, responses and events: one format everywhere, `<prefix>_<20 hex digits>`.

The server and the engine mint from here, so one session, response or item carries one id through the
logs of both.
"""

from __future__ import annotations

import uuid


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"

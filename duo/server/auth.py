"""Who may open a session: bearer tokens and browser origins.

Apps send `Authorization: Bearer KEY`. Browsers cannot set headers on a WebSocket, so they pass the key
as a subprotocol (`openai-insecure-api-key.KEY`, as OpenAI's browser clients do) or as `?api_key=KEY`.
Keys are required whenever the server listens beyond loopback, or whenever any are configured. Keys are
compared in constant time and never logged: a key in a query string is masked in every log line
(uvicorn logs each connection's path).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping

SUBPROTOCOL_PREFIX = "openai-insecure-api-key."


class AuthError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def presented_key(headers: Mapping[str, str], query: Mapping[str, str], subprotocols: list[str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for proto in subprotocols:
        if proto.startswith(SUBPROTOCOL_PREFIX):
            return proto[len(SUBPROTOCOL_PREFIX) :]
    return query.get("api_key")


def check(keys: frozenset[str], required: bool, headers: Mapping[str, str], query: Mapping[str, str],
          subprotocols: list[str], allowed_origins: list[str]) -> None:
    """Raise AuthError unless the request may connect."""
    origin = headers.get("origin")
    if origin is not None and "*" not in allowed_origins and origin not in allowed_origins:
        host = headers.get("host", "")
        if origin.split("://", 1)[-1] != host:  # same-origin pages (the demo page) are always allowed
            raise AuthError("origin_not_allowed")
    if not (required or keys):
        return
    key = presented_key(headers, query, subprotocols)
    if key is None:
        raise AuthError("missing_api_key")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise AuthError("invalid_api_key")


class RedactKeys(logging.Filter):
    """Masks `api_key=...` in a log record's message and arguments."""

    _key = re.compile(r"(api_key=)[^&\s\"']+")

    def _mask(self, value: object) -> object:
        return self._key.sub(r"\1***", value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(a) for a in record.args)
        return True


def redact_logs(names: tuple[str, ...] = ("uvicorn.error", "uvicorn.access")) -> None:
    """Install `RedactKeys` on the loggers that print request paths (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())

"""Who may open a session or read a page: bearer tokens, browser origins, Host names.

Apps send `Authorization: Bearer KEY`. Browsers cannot set headers on a WebSocket, so they pass the key
as a subprotocol (`openai-insecure-api-key.KEY`, as OpenAI's browser clients do) or as `?api_key=KEY`.
Keys are required whenever the server listens beyond loopback, or whenever any are configured. Keys are
compared in constant time; an address that fails the check too often is refused for a while; and keys are
never logged: every log line is masked (uvicorn logs each connection's path, and at its trace level the
headers).

Without keys the server trusts whoever can reach it on loopback, so it answers only loopback Host names
(and `allowed_hosts`): a page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
QUERY_KEY = "api_key"


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
    return query.get(QUERY_KEY)


def check(keys: frozenset[str], required: bool, headers: Mapping[str, str], query: Mapping[str, str],
          subprotocols: list[str], allowed_origins: list[str], scheme: str = "ws") -> None:
    """Raise AuthError unless the request may connect."""
    origin = headers.get("origin")
    if origin is not None and not origin_allowed(origin, allowed_origins, scheme, headers.get("host", "")):
        raise AuthError("origin_not_allowed")
    if not (required or keys):
        return
    key = presented_key(headers, query, subprotocols)
    if key is None:
        raise AuthError("missing_api_key")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise AuthError("invalid_api_key")


# -- origins and hosts ----------------------------------------------------------------------------------
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normal_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower case, without a trailing slash or the scheme's default port."""
    origin = origin.strip().lower().rstrip("/")
    scheme, _, host = origin.partition("://")
    port = _DEFAULT_PORTS.get(scheme)
    if port and host.endswith(":" + port):
        host = host[: -len(port) - 1]
    return f"{scheme}://{host}"


def origin_allowed(origin: str, allowed: list[str], scheme: str, host: str) -> bool:
    """A listed origin (scheme included), or the page's own: the same host and port, and a scheme at least
    as secure as the connection's. A `wss` connection takes only an `https` page; a plain one takes
    either, since a TLS proxy in front makes an `https` page's connection look plain here (no page at
    `https://` can come from a plain port itself)."""
    if "*" in allowed:
        return True
    seen = normal_origin(origin)
    if seen in {normal_origin(o) for o in allowed}:
        return True
    schemes = ("https",) if scheme in ("https", "wss") else ("http", "https")
    return any(seen == normal_origin(f"{own}://{host}") for own in schemes)


def host_name(host: str) -> str:
    """The name of a Host header, without its port: `[::1]:8000` -> `::1`, `Localhost.:80` -> `localhost`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, allowed_hosts: list[str]) -> bool:
    name = host_name(host)
    if "*" in allowed_hosts or name in {host_name(h) for h in allowed_hosts} or name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostCheck:
    """ASGI middleware for a keyless server: HTTP and WebSocket requests for other Host names are refused."""

    def __init__(self, app: Any, allowed_hosts: list[str], on_refused: Any = None) -> None:
        self.app, self.allowed_hosts, self.on_refused = app, allowed_hosts, on_refused

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not host_allowed(host, self.allowed_hosts):
                if self.on_refused is not None:
                    self.on_refused(host, scope.get("client"))
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": "host_not_allowed"})
                else:
                    body = b"host not allowed: without API keys this server answers only loopback names\n"
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


# -- failed logins ----------------------------------------------------------------------------------
class LoginThrottle:
    """Failed key checks per client address over the last `window_s`; past `limit`, that address waits."""

    def __init__(self, limit: int, window_s: float = 60.0, max_addresses: int = 10_000) -> None:
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 if it may now."""
        now = time.monotonic()
        times = self._recent(address, now)
        if not times:
            self._failures.pop(address, None)
        return self.window_s - (now - times[0]) if len(times) >= self.limit else 0.0

    def failed(self, address: str) -> None:
        now = time.monotonic()
        times = self._recent(address, now)
        times.append(now)
        self._failures.pop(address, None)
        self._failures[address] = times  # the most recent last: the oldest go first when full
        while len(self._failures) > self.max_addresses:
            del self._failures[next(iter(self._failures))]


# -- logs -----------------------------------------------------------------------------------------
_QUERY_PARAM = re.compile(r"(^|[?&;\s'\"(])([^=&\s'\"?#]*)=([^&\s]*)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\"]+")
_SUBPROTOCOL = re.compile(r"(?i)(" + re.escape(SUBPROTOCOL_PREFIX) + r")[^\s,'\"]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*(?:b?['\"])?)(?!\s|b?['\"]|bearer\s)[^\r\n'\"]+")


def _mask_param(match: re.Match[str]) -> str:
    # the name as the server decodes it: `?api%5Fkey=` is accepted as `api_key`, so it is masked as one
    if unquote_plus(match.group(2)).lower() == QUERY_KEY:
        return f"{match.group(1)}{match.group(2)}=***"
    return match.group(0)


def mask(text: str) -> str:
    """`text` with every key it may carry replaced by `***`."""
    text = _QUERY_PARAM.sub(_mask_param, text)
    text = _BEARER.sub(r"\1***", text)
    text = _SUBPROTOCOL.sub(r"\1***", text)
    return _AUTH_HEADER.sub(r"\1***", text)


class RedactKeys(logging.Filter):
    """Masks keys in a record's message and in each of its arguments, whatever their type (a path, a scope,
    headers); the arguments keep their number and place, since formatters read them (uvicorn's access log)."""

    @staticmethod
    def _masked(value: Any) -> Any:
        if value is None or isinstance(value, int | float):
            return value
        text = value if isinstance(value, str) else str(value)
        masked = mask(text)
        return value if masked == text else masked

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.args:
            record.msg = self._masked(record.msg)
            return True
        if isinstance(record.args, tuple):
            record.args = tuple(self._masked(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: self._masked(v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is left for the handler to report
            return True
        if (masked := mask(message)) != message:  # a key split between the template and an argument
            record.msg, record.args = masked, ()
        return True


LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets", "websockets.server")


def redact_logs(names: tuple[str, ...] = LOGGERS) -> None:
    """Install `RedactKeys` on the loggers that print requests and on every log handler configured now.

    A logger's filter sees only the records made on that logger; a handler's sees every record it writes,
    so calling this again once logging is configured (uvicorn configures its own) covers them all.
    """
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    targets: list[logging.Filterer] = [logging.getLogger(n) for n in names]
    targets += [h for lg in loggers for h in lg.handlers]
    for target in targets:
        if not any(isinstance(f, RedactKeys) for f in target.filters):
            target.addFilter(RedactKeys())

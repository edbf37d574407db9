"""Pure response decisions and header formatting for object responses (no I/O).

:func:`plan` turns an object's facts and a request's conditional/Range headers into a status and
a body slice; :func:`head_bytes` renders the response head. The hit path, the miss path and the
owner worker (which streams only the slice a peer asked for) all use the same two functions, so
they cannot disagree about what a request gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from vodedge.httpspec import (
    UNSATISFIABLE,
    ByteRange,
    http_date,
    if_range_matches,
    not_modified,
    parse_range,
)

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What a response needs to know about an object, stored or being filled."""

    length: int
    content_type: str
    etag: str
    last_modified: float
    cache_control: str
    stored_at: float


@dataclass(frozen=True, slots=True)
class Conditions:
    """The request headers that shape an object response."""

    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None


NO_CONDITIONS: Final = Conditions()
"""Shared by every request without Range or conditional headers (checked by identity)."""


@dataclass(frozen=True, slots=True)
class Plan:
    status: int  # 200, 206, 304, 416
    start: int = 0
    end: int = -1  # inclusive; end < start means no body

    @property
    def body_length(self) -> int:
        return max(0, self.end - self.start + 1)


def plan(facts: ObjectFacts, cond: Conditions) -> Plan:
    """Decide status and body slice; raises RangeError for a malformed Range (400)."""
    if not_modified(cond.if_none_match, cond.if_modified_since, facts.etag, facts.last_modified):
        return Plan(304)
    length = facts.length
    if cond.range is not None and if_range_matches(cond.if_range, facts.etag, facts.last_modified):
        r = parse_range(cond.range, length)
        if r is UNSATISFIABLE:
            return Plan(416)
        if isinstance(r, ByteRange):
            return Plan(206, r.start, r.end)
    return Plan(200, 0, length - 1)


class DateCache:
    """``Date`` header value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self, now: float) -> str:
        s = int(now)
        if s != self._second:
            self._second = s
            self._value = http_date(s)
        return self._value


_dates = DateCache()
_lm_cache: dict[float, str] = {}


def _last_modified(ts: float) -> str:
    v = _lm_cache.get(ts)
    if v is None:
        if len(_lm_cache) > 4096:
            _lm_cache.clear()
        v = _lm_cache[ts] = http_date(ts)
    return v


def cache_status(outcome: str, status: int) -> str:
    """The Cache-Status value (RFC 9211) of a miss answered with ``outcome``."""
    if outcome == "collapsed":
        return "vodedge; fwd=miss; collapsed"
    if outcome == "miss":
        return "vodedge; fwd=miss; stored"
    if outcome == "hit":
        return "vodedge; hit"
    return f'vodedge; fwd=miss; detail="{status}"'


def head_bytes(
    facts: ObjectFacts,
    p: Plan,
    cache_status: str,
    cors_origin: str,
    keep_alive: bool,
    now: float | None = None,
    content_encoding: str | None = None,
    etag: str | None = None,
    body_length: int | None = None,
) -> bytes:
    """Render the response head for an object response."""
    t = time.time() if now is None else now
    rest = head_rest(
        facts, p, cache_status, cors_origin, keep_alive, content_encoding, etag, body_length
    )
    return head_start(p.status, t, facts.stored_at) + rest


def head_start(status: int, now: float, stored_at: float) -> bytes:
    """Status line, Date and Age: the only parts of a hit's head that change over time (each
    in whole seconds)."""
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        f"Date: {_dates.get(now)}\r\n"
        f"Age: {max(0, int(now - stored_at))}\r\n"
    ).encode("latin-1")


def head_rest(
    facts: ObjectFacts,
    p: Plan,
    cache_status: str,
    cors_origin: str,
    keep_alive: bool,
    content_encoding: str | None = None,
    etag: str | None = None,
    body_length: int | None = None,
) -> bytes:
    """Everything after Age: fixed for a given object, plan and connection kind."""
    status = p.status
    blen = p.body_length if body_length is None else body_length
    lines = [
        f"ETag: {etag or facts.etag}\r\n"
        f"Last-Modified: {_last_modified(facts.last_modified)}\r\n"
        f"Cache-Control: {facts.cache_control}\r\n"
        f"Accept-Ranges: bytes\r\n"
        f"Cache-Status: {cache_status}\r\n"
    ]
    if status == 416:
        lines.append(f"Content-Range: bytes */{facts.length}\r\nContent-Length: 0\r\n")
    elif status != 304:
        lines.append(f"Content-Type: {facts.content_type}\r\nContent-Length: {blen}\r\n")
        if status == 206:
            lines.append(f"Content-Range: bytes {p.start}-{p.end}/{facts.length}\r\n")
    if content_encoding is not None:
        lines.append(f"Content-Encoding: {content_encoding}\r\nVary: Accept-Encoding\r\n")
    if cors_origin:
        lines.append(cors_headers(cors_origin))
    if not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class _Head:
    __slots__ = ("age", "head", "rest", "second")

    def __init__(self, rest: bytes) -> None:
        self.rest = rest
        self.second = -1
        self.age = -1
        self.head = b""


class HitHeads:
    """Heads of plain full hits (200, no Range, no conditionals, identity), rendered once per
    stored object and connection kind; the status line, Date and Age again only when the whole
    second of Date or of Age changes (at most twice a second)."""

    def __init__(self, cors_origin: str, max_entries: int = 65536) -> None:
        self._cors = cors_origin
        self._max = max_entries
        self._heads: dict[tuple[bytes, bool], _Head] = {}

    def full(self, facts: ObjectFacts, object_id: bytes, keep_alive: bool, now: float) -> bytes:
        k = (object_id, keep_alive)
        e = self._heads.get(k)
        second = int(now)
        age = int(now - facts.stored_at)
        if e is None:
            if len(self._heads) >= self._max:
                self._heads.clear()
            e = self._heads[k] = _Head(
                head_rest(
                    facts, Plan(200, 0, facts.length - 1), "vodedge; hit", self._cors, keep_alive
                )
            )
        elif e.second == second and e.age == age:
            return e.head
        e.second = second
        e.age = age
        e.head = head_start(200, now, facts.stored_at) + e.rest
        return e.head


_CORS_CACHE: dict[str, str] = {}


def cors_headers(origin: str) -> str:
    v = _CORS_CACHE.get(origin)
    if v is None:
        v = _CORS_CACHE[origin] = (
            f"Access-Control-Allow-Origin: {origin}\r\n"
            "Access-Control-Expose-Headers: Content-Length, Content-Range, Date, Age, ETag, "
            "Cache-Status\r\n"
            "Timing-Allow-Origin: *\r\n"
        )
    return v


def preflight_bytes(cors_origin: str, keep_alive: bool, now: float | None = None) -> bytes:
    t = time.time() if now is None else now
    return (
        "HTTP/1.1 204 No Content\r\n"
        f"Date: {_dates.get(t)}\r\n"
        f"Access-Control-Allow-Origin: {cors_origin}\r\n"
        "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
        "Access-Control-Allow-Headers: Range, If-None-Match, If-Modified-Since, If-Range\r\n"
        "Access-Control-Max-Age: 86400\r\n"
        f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}"
        "Content-Length: 0\r\n\r\n"
    ).encode("latin-1")


def simple_bytes(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    keep_alive: bool = True,
    extra: str = "",
    cors_origin: str = "",
    head_only: bool = False,
    now: float | None = None,
) -> bytes:
    """A small non-object response (errors, health, metrics)."""
    t = time.time() if now is None else now
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Date: {_dates.get(t)}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{cors_headers(cors_origin) if cors_origin else ''}"
        f"{extra}"
        f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}"
        "\r\n"
    ).encode("latin-1")
    return head if head_only else head + body

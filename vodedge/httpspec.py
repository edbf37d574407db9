"""Pure HTTP semantics shared by the origin and the appliance (RFC 9110 subsets we need).

No I/O: callers hand in header values and object facts, and get decisions back.

- :func:`parse_range`: single byte ranges (``a-b``, ``a-``, ``-n``); multi-range -> whole body;
  malformed -> :class:`RangeError` (400); unsatisfiable -> :data:`UNSATISFIABLE` (416).
- :func:`not_modified`: If-None-Match / If-Modified-Since -> 304 decision.
- :func:`if_range_matches`: If-Range with a strong ETag or a date.
- :func:`content_type_for`: Content-Type by file extension of the published layout.
"""

from __future__ import annotations

import email.utils
import functools
import time
from dataclasses import dataclass
from typing import Final

CONTENT_TYPES: Final[dict[str, str]] = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".m4a": "audio/mp4",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".json": "application/json",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
PLAYLIST_EXTENSIONS: Final = (".m3u8", ".mpd")
IMMUTABLE_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"


def content_type_for(path: str) -> str:
    dot = path.rfind(".")
    if dot < 0:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(path[dot:].lower(), DEFAULT_CONTENT_TYPE)


def is_playlist(path: str) -> bool:
    return path.endswith(PLAYLIST_EXTENSIONS)


class RangeError(ValueError):
    """A Range header that is not well formed (maps to 400)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive byte range ``start..end`` of an object of ``length`` bytes."""

    start: int
    end: int
    length: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.length}"


class _Unsatisfiable:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSATISFIABLE"


UNSATISFIABLE: Final = _Unsatisfiable()
RangeResult = ByteRange | _Unsatisfiable | None  # None: serve the whole body


def parse_range(header: str | None, length: int) -> RangeResult:
    """Decide what a Range header asks of an object of ``length`` bytes."""
    if header is None:
        return None
    spec = parse_range_spec(header)
    if spec is None:
        return None  # multi-range: whole body with 200 is allowed by RFC 9110
    first, last = spec
    if first is None:
        # suffix range: last `last` bytes
        assert last is not None
        if last == 0 or length == 0:
            return UNSATISFIABLE
        start = max(0, length - last)
        return ByteRange(start, length - 1, length)
    if first >= length:
        return UNSATISFIABLE
    end = length - 1 if last is None else min(last, length - 1)
    return ByteRange(first, end, length)


def parse_range_spec(header: str) -> tuple[int | None, int | None] | None:
    """The syntax of a Range header, whatever the object: ``(first, last)`` of its one range
    (``first`` None for a suffix, ``last`` None when open-ended), or None for several ranges;
    :class:`RangeError` when malformed. Short headers (all that players send) are cached:
    players repeat the same few, and the appliance checks a Range before it knows the object's
    length, then plans with it; long ones (a client's choice) are parsed every time."""
    if len(header) <= _RANGE_CACHE_MAX_LEN:
        return _cached_range_spec(header)
    return _range_spec(header)


_RANGE_CACHE_MAX_LEN = 64


def _range_spec(header: str) -> tuple[int | None, int | None] | None:
    value = header.strip()
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise RangeError("Range must be 'bytes=...'")
    specs = [s.strip() for s in spec.split(",")]
    if any(not s for s in specs):
        raise RangeError("empty range in Range header")
    parsed = [_parse_spec(s) for s in specs]
    if len(parsed) > 1:
        return None
    return parsed[0]


_cached_range_spec = functools.lru_cache(maxsize=4096)(_range_spec)


def _parse_spec(spec: str) -> tuple[int | None, int | None]:
    a, sep, b = spec.partition("-")
    if not sep:
        raise RangeError(f"bad range spec {spec!r}")
    a, b = a.strip(), b.strip()
    if not _digits(a) or not _digits(b) or len(a) > 18 or len(b) > 18:
        raise RangeError(f"bad range spec {spec!r}")
    if not a:
        if not b:
            raise RangeError(f"bad range spec {spec!r}")
        return None, int(b)
    first = int(a)
    last = int(b) if b else None
    if last is not None and last < first:
        raise RangeError(f"range end before start in {spec!r}")
    return first, last


def _digits(s: str) -> bool:
    """Empty, or ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return not s or (s.isascii() and s.isdigit())


def _etag_list(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def not_modified(
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str,
    last_modified: float,
) -> bool:
    """True when a GET/HEAD should be answered 304 (RFC 9110 13.2.2 order)."""
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        return any(_weak_equal(t, etag) for t in _etag_list(if_none_match))
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        if since is not None and int(last_modified) <= since:
            return True
    return False


def if_range_matches(if_range: str | None, etag: str, last_modified: float) -> bool:
    """True when a Range request may be honoured given If-Range (absent -> True)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"'):
        return value == etag  # strong comparison only
    if value.startswith("W/"):
        return False
    when = parse_http_date(value)
    return when is not None and int(last_modified) == when


def http_date(ts: float | None = None) -> str:
    return email.utils.formatdate(time.time() if ts is None else ts, usegmt=True)


def parse_http_date(value: str) -> int | None:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None or dt.tzinfo is None:
        return None
    return int(dt.timestamp())

"""The API's input rules, without I/O: JSON bodies, query strings and headers in, typed values or
:class:`~origin.api.errors.ApiError` (400, or 413 for a size over the maximum) out.

Request bodies are closed: an unknown field is a 400, so that a misspelt field is never ignored.
Text limits are the catalog's (:mod:`origin.catalog.models`), checked here first so that the
client learns which field is wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from origin.api.errors import ApiError, bad_request
from origin.catalog.models import (
    MAX_DESCRIPTION,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TITLE,
    VIDEO_STATUSES,
    VideoStatus,
    is_unicode_text,
)
from vodedge.paths import VIDEO_ID_RE

MAX_JSON_BODY = 256 * 1024
"""Bytes of a JSON request body; the largest valid one (title, description, tags) is ~90 KB."""
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_SEARCH_RESULTS = 100
DEFAULT_SEARCH_RESULTS = 20
MAX_QUERY_LEN = 500
"""Characters of a search query."""
MAX_VIEWS_PER_CALL = 1_000_000
MAX_CURSOR_LEN = 200

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20})\Z")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}\Z")
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no", ""})


def decode_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise bad_request("the body is not valid JSON", "bad_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "bad_json")
    return body


def check_id(raw: str, what: str) -> str:
    """A video or upload id from the path (``[A-Za-z0-9_-]{1,64}``); anything else is a 400."""
    if not VIDEO_ID_RE.match(raw):
        raise bad_request(f"{what} must match [A-Za-z0-9_-]{{1,64}}", "bad_id")
    return raw


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise bad_request(f"unknown field(s): {', '.join(extra)}", "unknown_field")


def _text(body: Mapping[str, Any], name: str, limit: int, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name}: required", "missing_field")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise bad_request(f"{name}: expected a string of at most {limit} characters")
    if required and not value.strip():
        raise bad_request(f"{name}: must not be empty")
    _unicode(value, name)
    return value


def _unicode(value: str, name: str) -> None:
    """400 for a string with a lone surrogate (JSON's ``"\\udc80"``): stored, it would break
    every answer carrying it."""
    if not is_unicode_text(value):
        raise bad_request(f"{name}: not valid Unicode text (a lone surrogate)", "bad_text")


def _tags(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = body.get("tags")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise bad_request(f"tags: expected an array of at most {MAX_TAGS} strings")
    for tag in value:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LEN:
            raise bad_request(f"tags: each tag is a non-empty string of at most {MAX_TAG_LEN}")
        _unicode(tag, "tags")
    return tuple(value)


def _whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name}: expected a whole number")
    return value


@dataclass(frozen=True, slots=True)
class NewUpload:
    """``POST /uploads``: what is coming and what it will be called."""

    title: str
    size: int
    sha256: str
    """Lowercase hex; checked against the received file before the video is created."""
    description: str = ""
    tags: tuple[str, ...] = ()


def parse_new_upload(body: Mapping[str, Any], max_size: int) -> NewUpload:
    """The upload to create; a size over ``max_size`` is a 413 before anything is stored."""
    _only(body, {"title", "description", "tags", "size", "sha256"})
    title = _text(body, "title", MAX_TITLE, required=True)
    description = _text(body, "description", MAX_DESCRIPTION, required=False) or ""
    if "size" not in body:
        raise bad_request("size: required (bytes of the whole file)", "missing_field")
    size = _whole(body["size"], "size")
    if size < 1:
        raise bad_request("size: must be at least 1 byte")
    if size > max_size:
        raise ApiError(
            413,
            "too_large",
            f"size {size} is over the maximum upload size of {max_size} bytes",
            max_upload_size=max_size,
        )
    sha256 = body.get("sha256")
    if sha256 is None:
        raise bad_request(
            "sha256: required (SHA-256 of the whole file, 64 hex digits)", "missing_field"
        )
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise bad_request("sha256: expected 64 hex digits")
    return NewUpload(
        title=cast(str, title),
        size=size,
        sha256=sha256.lower(),
        description=description,
        tags=_tags(body) or (),
    )


@dataclass(frozen=True, slots=True)
class PartRange:
    """Bytes ``start..end`` (inclusive) of an upload of ``total`` bytes."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str | None, size: int) -> PartRange:
    """The part a PUT carries: ``Content-Range: bytes a-b/total`` (RFC 9110 14.4), or the whole
    file when the header is absent. ``total`` must be the declared size."""
    if value is None:
        return PartRange(0, size - 1, size)
    m = _CONTENT_RANGE_RE.match(value.strip())
    if m is None:
        raise bad_request("Content-Range: expected 'bytes FIRST-LAST/SIZE'", "bad_range")
    start, end, total = (int(g) for g in m.groups())
    if total != size:
        raise bad_request(
            f"Content-Range: the upload is {size} bytes, not {total}", "size_mismatch"
        )
    if end < start or end >= total:
        raise bad_request(f"Content-Range: bytes {start}-{end} do not fit {total}", "bad_range")
    return PartRange(start, end, total)


def parse_bool(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"{name}: expected true or false")


def parse_int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name}: expected a whole number") from None
    if not lo <= value <= hi:
        raise bad_request(f"{name}: must be between {lo} and {hi}")
    return value


def parse_status(raw: str | None) -> VideoStatus | None:
    if raw is None or raw == "":
        return None
    status = raw.strip().upper()
    if status not in VIDEO_STATUSES:
        raise bad_request(f"status: expected one of {', '.join(VIDEO_STATUSES)}")
    return cast(VideoStatus, status)


def parse_time(raw: str | None, name: str) -> float | None:
    """Unix seconds (``1718000000.5``) or an RFC 3339 date-time with a zone offset."""
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise bad_request(f"{name}: expected unix seconds or an RFC 3339 date-time") from None
        if when.tzinfo is None:
            raise bad_request(f"{name}: the date-time needs a zone (Z or +hh:mm)") from None
        return when.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise bad_request(f"{name}: expected unix seconds >= 0")
    return seconds


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``GET /videos``: the catalog's page parameters."""

    status: VideoStatus | None = None
    updated_since: float | None = None
    limit: int = DEFAULT_PAGE
    cursor: str | None = None
    include_deleted: bool = False


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    cursor = query.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR_LEN:
        raise bad_request("cursor: not a cursor this API returned", "bad_cursor")
    return ListQuery(
        status=parse_status(query.get("status")),
        updated_since=parse_time(query.get("updated_since"), "updated_since"),
        limit=parse_int(query.get("limit"), "limit", DEFAULT_PAGE, 1, MAX_PAGE),
        cursor=cursor,
        include_deleted=parse_bool(query.get("include_deleted"), "include_deleted"),
    )


@dataclass(frozen=True, slots=True)
class SearchQuery:
    q: str
    limit: int = DEFAULT_SEARCH_RESULTS
    status: VideoStatus | None = None


def parse_search_query(query: Mapping[str, str]) -> SearchQuery:
    q = query.get("q")
    if q is None or not q.strip():
        raise bad_request("q: required (words to look for)", "missing_field")
    if len(q) > MAX_QUERY_LEN:
        raise bad_request(f"q: at most {MAX_QUERY_LEN} characters")
    _unicode(q, "q")
    return SearchQuery(
        q=q,
        limit=parse_int(query.get("limit"), "limit", DEFAULT_SEARCH_RESULTS, 1, MAX_SEARCH_RESULTS),
        status=parse_status(query.get("status")),
    )


@dataclass(frozen=True, slots=True)
class VideoPatch:
    """``PATCH /videos/{id}``: the descriptive fields to change (None: leave alone)."""

    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None


def parse_video_patch(body: Mapping[str, Any]) -> VideoPatch:
    _only(body, {"title", "description", "tags"})
    if not body:
        raise bad_request("give at least one of title, description, tags", "missing_field")
    if "title" in body and body["title"] is None:
        raise bad_request("title: must not be null")
    return VideoPatch(
        title=_text(body, "title", MAX_TITLE, required="title" in body),
        description=_text(body, "description", MAX_DESCRIPTION, required=False),
        tags=_tags(body),
    )


def parse_views(body: Mapping[str, Any]) -> int:
    """``POST /videos/{id}/views``: views to add (``{"count": n}``, 1 when the body is empty)."""
    _only(body, {"count"})
    count = _whole(body.get("count", 1), "count")
    if not 1 <= count <= MAX_VIEWS_PER_CALL:
        raise bad_request(f"count: must be between 1 and {MAX_VIEWS_PER_CALL}")
    return count

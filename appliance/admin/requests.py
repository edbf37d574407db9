"""Admin API input rules, without I/O: bodies and queries in, typed values or BadRequest out."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from appliance.config import PrefillConfig
from appliance.prefill import PrefillFile, PrefillSpec
from vodedge.paths import MAX_KEY_LEN, VIDEO_ID_RE, PathError, parse_object_path

MAX_PREFILL_FILES = 100_000
MAX_PURGE_PATHS = 100_000
MAX_PURGE_PREFIXES = 1000
MAX_PAGE = 1000
_PREFIX_RE = re.compile(r"^/v/[A-Za-z0-9_./-]*\Z")


class BadRequest(ValueError):
    """Input the admin API refuses (400); the message says what is wrong."""


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise BadRequest(f"unknown field(s): {', '.join(extra)}")


MAX_PREFILL_RATE = 10**12
"""Bytes per second (8 Tbit/s): far above any link, far below what breaks a float."""


def _int(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"{name}: expected an integer")
    if v < lo or (hi is not None and v > hi):
        raise BadRequest(f"{name}: must be between {lo} and {hi}" if hi else f"{name}: >= {lo}")
    return v


def object_key(path: Any, where: str) -> str:
    """A plain ``/v/…`` object path, as the cache key."""
    if not isinstance(path, str):
        raise BadRequest(f"{where}: expected a string")
    try:
        obj = parse_object_path(path)
    except PathError as e:
        raise BadRequest(f"{where}: {e}") from None
    if obj.token is not None:
        raise BadRequest(f"{where}: give the /v/… path, without a /t/{{token}} prefix")
    return obj.key


def parse_prefill(body: Any, cfg: PrefillConfig) -> PrefillSpec:
    b = _object(body)
    _only(b, {"objects", "rate_bytes_per_s", "concurrency", "name"})
    objects = b.get("objects")
    if not isinstance(objects, list) or not objects:
        raise BadRequest("objects: expected a non-empty array")
    if len(objects) > MAX_PREFILL_FILES:
        raise BadRequest(f"objects: at most {MAX_PREFILL_FILES} per job")
    files: list[PrefillFile] = []
    seen: set[str] = set()
    for i, o in enumerate(objects):
        if not isinstance(o, dict):
            raise BadRequest(f"objects[{i}]: expected an object")
        _only(o, {"path", "size"})
        key = object_key(o.get("path"), f"objects[{i}].path")
        size = _int(o, "size", 0)
        if key not in seen:
            seen.add(key)
            files.append(PrefillFile(key, size))
    rate = _int(b, "rate_bytes_per_s", 1024, MAX_PREFILL_RATE) or cfg.default_rate
    if cfg.max_rate:
        rate = min(rate, cfg.max_rate)
    concurrency = _int(b, "concurrency", 1, 64) or cfg.default_concurrency
    name = b.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise BadRequest("name: expected a string of at most 200 characters")
    return PrefillSpec(tuple(files), rate, min(concurrency, cfg.max_concurrency), name)


def _prefix(p: Any, where: str) -> str:
    if not isinstance(p, str) or not _PREFIX_RE.match(p) or len(p) > MAX_KEY_LEN:
        raise BadRequest(f"{where}: expected a path prefix starting with /v/")
    if ".." in p or "//" in p:
        raise BadRequest(f"{where}: '..' and '//' are not allowed")
    parts = p.split("/")
    if len(parts) > 3 and not VIDEO_ID_RE.match(parts[2]):
        raise BadRequest(f"{where}: invalid video id")
    return p


def parse_purge(body: Any) -> tuple[list[str], list[str]]:
    b = _object(body)
    _only(b, {"paths", "prefixes"})
    paths, prefixes = b.get("paths", []), b.get("prefixes", [])
    if not isinstance(paths, list) or not isinstance(prefixes, list):
        raise BadRequest("paths and prefixes: expected arrays")
    if not paths and not prefixes:
        raise BadRequest("give at least one of paths or prefixes")
    if len(paths) > MAX_PURGE_PATHS or len(prefixes) > MAX_PURGE_PREFIXES:
        raise BadRequest(f"at most {MAX_PURGE_PATHS} paths and {MAX_PURGE_PREFIXES} prefixes")
    keys = [object_key(p, f"paths[{i}]") for i, p in enumerate(paths)]
    pfx = [_prefix(p, f"prefixes[{i}]") for i, p in enumerate(prefixes)]
    return keys, pfx


def encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        raw = (cursor + "=" * (-len(cursor) % 4)).encode()
        return base64.b64decode(raw, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise BadRequest("cursor: not a cursor this API returned") from None


def parse_limit(q: Mapping[str, str]) -> int:
    raw = q.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit: expected an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}")
    return limit


def parse_contents_query(q: Mapping[str, str]) -> tuple[str, str | None, int]:
    prefix = _prefix(q.get("prefix") or "/v/", "prefix")
    return prefix, decode_cursor(q.get("cursor")), parse_limit(q)

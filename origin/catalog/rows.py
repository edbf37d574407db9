"""Mapping between SQLite rows and the catalog's dataclasses; JSON in and out of TEXT columns.

Column lists are spelled once here so that every ``SELECT`` and ``RETURNING`` of a table yields
the same shape, and each ``from_*`` function reads it by name.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from origin.catalog.errors import Invalid
from origin.catalog.models import Job, PublishedFile, Rendition, Upload, Video

VIDEO_COLUMNS = (
    "video_id",
    "title",
    "description",
    "tags",
    "status",
    "failure_reason",
    "duration_s",
    "width",
    "height",
    "source_path",
    "created_at",
    "updated_at",
    "published_at",
    "view_count",
    "deleted_at",
)
RENDITION_COLUMNS = (
    "name",
    "kind",
    "codec",
    "width",
    "height",
    "bitrate_bps",
    "average_bitrate_bps",
    "codecs_string",
    "language",
)
FILE_COLUMNS = ("path", "size", "rendition")
UPLOAD_COLUMNS = (
    "upload_id",
    "size",
    "received",
    "sha256_expected",
    "sha256_actual",
    "title",
    "description",
    "tags",
    "status",
    "temp_path",
    "video_id",
    "created_at",
    "updated_at",
)
JOB_COLUMNS = (
    "job_id",
    "video_id",
    "kind",
    "key",
    "payload",
    "state",
    "attempts",
    "max_attempts",
    "lease_owner",
    "lease_expires_at",
    "not_before",
    "last_error",
    "error_log",
    "result",
    "created_at",
    "updated_at",
)


Row = sqlite3.Row | Mapping[str, Any]
"""A fetched row, or the dict of one with extra columns removed (search scores)."""

_REAL_COLUMNS = frozenset(
    {
        "duration_s",
        "created_at",
        "updated_at",
        "published_at",
        "deleted_at",
        "lease_expires_at",
        "not_before",
    }
)


def columns(names: tuple[str, ...], table: str = "") -> str:
    """``a, b, c`` or, with a table alias, ``t.a, t.b, t.c`` for joins."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + name for name in names)


def dump_json(value: object) -> str:
    """Compact, key-sorted JSON (so equal payloads are equal text); Invalid if not JSON."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Invalid(f"not representable as JSON: {e}") from None


def _fields(row: Row, **decoded: Any) -> dict[str, Any]:
    """The row as keyword arguments: ``decoded`` replaces JSON columns, and REAL columns are
    floats again (SQLite hands back a whole-number REAL as an int through ``RETURNING``)."""
    fields = dict(row)
    for name in _REAL_COLUMNS.intersection(fields):
        if fields[name] is not None:
            fields[name] = float(fields[name])
    fields.update(decoded)
    return fields


def video_from(row: Row) -> Video:
    return Video(**_fields(row, tags=tuple(json.loads(row["tags"]))))


def rendition_from(row: Row) -> Rendition:
    return Rendition(**_fields(row))


def file_from(row: Row) -> PublishedFile:
    return PublishedFile(**_fields(row))


def upload_from(row: Row) -> Upload:
    return Upload(**_fields(row, tags=tuple(json.loads(row["tags"]))))


def job_from(row: Row) -> Job:
    result = row["result"]
    return Job(
        **_fields(
            row,
            payload=json.loads(row["payload"]),
            error_log=tuple(json.loads(row["error_log"])),
            result=None if result is None else json.loads(result),
        )
    )

"""Object paths of the published layout (DESIGN.md) and the path-token prefix.

A valid object path is ``/v/{video_id}/{name}`` or ``/v/{video_id}/{dir}/{name}`` (one or two
levels below the title) made of safe characters only. Anything else is rejected here, before any
store or origin work, so no request can name a file system path or reach the origin with junk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
MAX_PATH_LEN = 512
MAX_KEY_LEN = 400  # LMDB keys are at most 511 bytes
MAX_DEPTH = 3  # components after the video id: e.g. thumbs/sprites/x.jpg


class PathError(ValueError):
    """The request path is not a valid object path (maps to 400)."""


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """A validated object path; ``key`` is the cache key (the path without any token)."""

    key: str
    video_id: str
    token: str | None


def parse_object_path(raw: str) -> ObjectPath:
    """Validate ``/v/...`` or ``/t/{token}/v/...``; raise PathError otherwise.

    ``raw`` is the path part of the request target, without query string, not percent-decoded:
    percent signs are not allowed in object paths at all, so encoded traversal cannot sneak in.
    """
    if len(raw) > MAX_PATH_LEN:
        raise PathError("path too long")
    token: str | None = None
    path = raw
    if path.startswith("/t/"):
        end = path.find("/", 3)
        if end < 0:
            raise PathError("token without object path")
        token = path[3:end]
        if not token:
            raise PathError("empty token")
        path = path[end:]
    if not path.startswith("/v/"):
        raise PathError("not an object path (expected /v/{video_id}/...)")
    if len(path) > MAX_KEY_LEN:
        raise PathError("object path too long")
    parts = path[3:].split("/")
    if len(parts) < 2:
        raise PathError("object path names no file")
    video_id = parts[0]
    if not VIDEO_ID_RE.match(video_id):
        raise PathError("invalid video id")
    rest = parts[1:]
    if len(rest) > MAX_DEPTH:
        raise PathError("object path too deep")
    for seg in rest:
        if not _SEGMENT_RE.match(seg) or ".." in seg:
            raise PathError("invalid path component")
    return ObjectPath(key=path, video_id=video_id, token=token)

"""Rows of the catalog as frozen dataclasses, and the pure rules about them.

Nothing here touches the database: statuses and their allowed transitions, id generation,
argument checks, the list cursor and the retry back-off are plain functions so that tests and
another backend (PostgreSQL) share them.

Timestamps are float seconds since the epoch, taken from the repository's injected clock.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from origin.catalog.errors import Invalid
from vodedge.paths import VIDEO_ID_RE, PathError, parse_object_path

VideoStatus = Literal["PENDING", "SEGMENTED", "TRANSCODING", "READY", "FAILED"]
VIDEO_STATUSES: tuple[str, ...] = get_args(VideoStatus)
JobState = Literal["queued", "leased", "done", "failed"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
UploadStatus = Literal["open", "complete", "aborted"]
RenditionKind = Literal["video", "audio", "subtitle"]

Json = Mapping[str, Any]
"""A JSON object (job payloads and results)."""

MAX_TITLE = 512
MAX_DESCRIPTION = 16_384
MAX_TAGS = 32
MAX_TAG_LEN = 64
MAX_ERROR_LEN = 4_000
"""Characters of one job error kept (the stderr tail of ffmpeg fits; a whole log does not)."""

RENDITION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
"""Rendition names are one path component of the published layout (``h264-720p``)."""

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")

# The pipeline moves forward through these; READY comes only from a publish, PENDING again only
# from an operator's re-run of a FAILED video.
_PROGRESS: dict[str, int] = {"PENDING": 0, "SEGMENTED": 1, "TRANSCODING": 2}


def new_id() -> str:
    """A random 11-character base64url id (64 bits): ``[A-Za-z0-9_-]{11}``."""
    return secrets.token_urlsafe(8)


def may_set_status(old: VideoStatus, new: VideoStatus) -> bool:
    """Whether ``set_status`` may move a video from ``old`` to ``new``.

    Staying put is allowed (workers redo steps); PENDING -> SEGMENTED -> TRANSCODING only
    forwards; FAILED from anything but READY. READY is reached by publishing and never left
    (re-publishing an id needs a fleet purge); FAILED -> PENDING is a re-run, not a status set.
    """
    if old == new:
        return new != "READY"
    if new == "FAILED":
        return old != "READY"
    return old in _PROGRESS and new in _PROGRESS and _PROGRESS[new] > _PROGRESS[old]


def check_video_id(video_id: str) -> str:
    if not isinstance(video_id, str) or not VIDEO_ID_RE.match(video_id):
        raise Invalid(f"video id must match [A-Za-z0-9_-]{{1,64}}, got {video_id!r}")
    return video_id


def check_status(status: str) -> VideoStatus:
    if status not in VIDEO_STATUSES:
        raise Invalid(f"status must be one of {', '.join(VIDEO_STATUSES)}, got {status!r}")
    return cast(VideoStatus, status)


def is_unicode_text(value: str) -> bool:
    """Whether ``value`` is text UTF-8 can carry: no lone surrogate (``"\\ud800"`` in JSON is
    one; Python's ``json`` and ``os.fsdecode`` let them through)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(name: str, value: str, limit: int, *, empty_ok: bool) -> str:
    if not isinstance(value, str) or len(value) > limit or (not empty_ok and not value.strip()):
        what = "a string" if empty_ok else "a non-empty string"
        raise Invalid(f"{name} must be {what} of at most {limit} characters")
    if not is_unicode_text(value):
        # Stored, it would break every answer that carries it (they are UTF-8).
        raise Invalid(f"{name} holds a lone surrogate, which is not text")
    return value


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise Invalid("tags must be a list of strings, not one string")
    out = tuple(tags)
    if len(out) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags")
    for tag in out:
        check_text("a tag", tag, MAX_TAG_LEN, empty_ok=False)
    return out


def check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise Invalid(f"{name} must be > 0, got {value!r}")


def check_specs(specs: Iterable[JobSpec]) -> None:
    for spec in specs:
        spec.check()


def clip_error(text: str | None) -> str | None:
    """``text`` cut to :data:`MAX_ERROR_LEN`, keeping its end (where errors say what failed)."""
    if text is None or len(text) <= MAX_ERROR_LEN:
        return text
    return "…" + text[-(MAX_ERROR_LEN - 1) :]


def check_sha256(value: str | None) -> str | None:
    if value is not None and not SHA256_RE.match(value):
        raise Invalid("sha256 must be 64 lowercase hex digits")
    return value


@dataclass(frozen=True, slots=True)
class Video:
    """One title. ``tags`` is stored as a JSON array; ``deleted_at`` is set on a soft delete."""

    video_id: str
    title: str
    description: str
    tags: tuple[str, ...]
    status: VideoStatus
    failure_reason: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    source_path: str | None
    """Where the uploaded source lies in media storage (kept for re-runs)."""
    created_at: float
    updated_at: float
    published_at: float | None
    view_count: int
    deleted_at: float | None


@dataclass(frozen=True, slots=True)
class Rendition:
    """One published rendition of a video, as the packager measured it."""

    name: str
    """Directory name in the layout: ``h264-720p``, ``aac-128k-en``, ``subs``…"""
    kind: RenditionKind
    codec: str
    """Short codec name: ``h264``, ``hevc``, ``av1``, ``aac``, ``webvtt``."""
    width: int | None = None
    height: int | None = None
    bitrate_bps: int | None = None
    """Peak bandwidth (HLS ``BANDWIDTH``)."""
    average_bitrate_bps: int | None = None
    """HLS ``AVERAGE-BANDWIDTH``."""
    codecs_string: str | None = None
    """RFC 6381 string for ``CODECS``: ``avc1.64001f``, ``mp4a.40.2``."""
    language: str | None = None
    """BCP 47 language of an audio or subtitle rendition."""

    def check(self) -> None:
        if not RENDITION_RE.match(self.name) or ".." in self.name:
            raise Invalid(f"rendition name {self.name!r} is not a path component")
        for name in ("width", "height", "bitrate_bps", "average_bitrate_bps"):
            check_positive(f"rendition {self.name}: {name}", getattr(self, name))


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """One file of a published title: the unit the control plane places and prefills."""

    path: str
    """Object path ``/v/{video_id}/...``."""
    size: int
    rendition: str | None = None
    """The rendition the file belongs to; None for master playlists, MPD, thumbnails."""

    def check(self, video_id: str) -> None:
        try:
            parsed = parse_object_path(self.path)
        except PathError as e:
            raise Invalid(f"file path {self.path!r}: {e}") from None
        if parsed.token is not None or parsed.video_id != video_id:
            raise Invalid(f"file path {self.path!r} is not below /v/{video_id}/")
        if not isinstance(self.size, int) or self.size < 0:
            raise Invalid(f"file {self.path}: size must be an int >= 0")


@dataclass(frozen=True, slots=True)
class VideoDetail:
    """A video with what it published (empty until READY), read in one snapshot."""

    video: Video
    renditions: tuple[Rendition, ...]
    files: tuple[PublishedFile, ...]


@dataclass(frozen=True, slots=True)
class VideoPage:
    videos: tuple[Video, ...]
    next_cursor: str | None
    """Pass back to get the next page; None when this page is the last."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    video: Video
    score: float
    """FTS5 bm25 with column weights; lower is a better match (results come sorted)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A resumable upload: bytes arrive in order at ``received`` until it equals ``size``."""

    upload_id: str
    size: int
    """Declared size in bytes (the API enforces its maximum before creating the upload)."""
    received: int
    sha256_expected: str | None
    sha256_actual: str | None
    title: str
    description: str
    tags: tuple[str, ...]
    status: UploadStatus
    temp_path: str
    video_id: str | None
    """The video completing the upload created."""
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job to enqueue; ``key`` names the work, unique per video, so enqueue is idempotent."""

    kind: str
    """The step: ``probe``, ``analyse``, ``encode_chunk``, ``package``, ``publish``…"""
    key: str
    """E.g. ``encode:h264-720p:chunk-0003``; the same key never makes a second job."""
    payload: Json = field(default_factory=dict)
    max_attempts: int = 3

    def check(self) -> None:
        check_text("job kind", self.kind, 64, empty_ok=False)
        check_text("job key", self.key, 256, empty_ok=False)
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise Invalid("max_attempts must be an int >= 1")


@dataclass(frozen=True, slots=True)
class Job:
    """One job row. While ``state == "leased"``, ``lease_owner`` holds it until expiry."""

    job_id: int
    video_id: str
    kind: str
    key: str
    payload: Json
    state: JobState
    attempts: int
    """Claims so far (an expired lease counts as an attempt)."""
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    not_before: float
    last_error: str | None
    error_log: tuple[Json, ...]
    """One entry per failed attempt: ``{"attempt", "worker", "error", "at"}``."""
    result: Json | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class JobCounts:
    queued: int = 0
    leased: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.leased + self.done + self.failed

    @staticmethod
    def sum(counts: Iterable[JobCounts]) -> JobCounts:
        q = le = d = f = 0
        for c in counts:
            q, le, d, f = q + c.queued, le + c.leased, d + c.done, f + c.failed
        return JobCounts(q, le, d, f)


@dataclass(frozen=True, slots=True)
class CatalogStats:
    """A snapshot of the catalog for monitoring (:meth:`Catalog.stats`)."""

    jobs: Mapping[tuple[str, str], int]
    """Jobs still to run (``queued``, due or backing off) or running (``leased``), by
    ``(kind, state)``, of videos that can progress (neither FAILED nor deleted): the work ahead
    of the workers. Kinds and states with no job are absent."""
    oldest_due_s: float
    """Seconds the longest-waiting due queued job has been claimable (0 when none is due): it
    grows when no worker takes jobs."""
    videos: Mapping[str, int]
    """Videos by status, deleted ones left out. Statuses with no video are absent."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off between attempts of a failed job: ``base_s * 2**(attempt-1)``, capped.

    No jitter: jobs of one video fail for their own reasons at their own times, and a
    deterministic delay keeps tests exact.
    """

    base_s: float = 5.0
    max_s: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        return min(self.max_s, self.base_s * 2.0 ** max(0, attempts - 1))


def encode_cursor(updated_at: float, video_id: str) -> str:
    """Opaque keyset cursor after the row (updated_at, video_id)."""
    raw = f"{updated_at!r}|{video_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, video_id = raw.partition("|")
        return float(at), check_video_id(video_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("bad cursor") from None

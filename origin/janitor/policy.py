"""What the janitor removes: pure decisions over candidates the driver gathered (no I/O, no
clock; ``now`` is a parameter).

Three kinds, each with its own rule:

- an **open upload** whose ``updated_at`` is older than ``api.upload_expiry_s``: aborted, its
  partial file removed. (A part's bytes are recorded when the part ends, so the expiry has a
  floor far above any part in flight: :data:`origin.config.MIN_UPLOAD_EXPIRY_S`.)
- the **work directory** ``{pipeline.work_dir}/{video_id}`` of a live video FAILED for longer
  than ``pipeline.failed_work_expiry_s``. Nothing runs for a FAILED video, and the API's
  re-run clears the directory before it starts again, so a re-run reuses nothing of it; only
  ``Catalog.rerun(keep_done=True)``, which no route calls, would reuse finished chunks, and
  only within that time.
- a **staging directory** ``{media.root}/.staging/{video_id}.…`` older than
  :data:`STAGING_EXPIRY_S` whose video no job can be running for: READY, FAILED, deleted, or
  unknown to the catalog. A PENDING, SEGMENTED or TRANSCODING video's are never touched, however
  old (a package step may be building it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from origin.catalog.models import VideoStatus
from vodedge.paths import VIDEO_ID_RE

STAGING_EXPIRY_S = 86400.0
"""Age (directory mtime) after which a staging directory of a settled video is removed: far
longer than any package step, so a directory still being written is never taken."""

SETTLED: frozenset[VideoStatus] = frozenset({"READY", "FAILED"})
"""Statuses no pipeline step runs for (a re-run moves a video out of FAILED first)."""


@dataclass(frozen=True, slots=True)
class Ages:
    """How old each kind must be before it goes, in seconds (from the configuration)."""

    upload_expiry_s: float
    failed_work_expiry_s: float
    staging_expiry_s: float = STAGING_EXPIRY_S


@dataclass(frozen=True, slots=True)
class OpenUpload:
    """An upload the catalog holds as open."""

    upload_id: str
    updated_at: float
    temp_path: Path


@dataclass(frozen=True, slots=True)
class VideoState:
    """What the catalog says of a video that has a directory on disk."""

    status: VideoStatus
    updated_at: float
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class WorkDirCandidate:
    """``{work_dir}/{video_id}`` as found on disk; ``video`` None = unknown to the catalog."""

    video_id: str
    video: VideoState | None


@dataclass(frozen=True, slots=True)
class StagingCandidate:
    """A directory under ``{media.root}/.staging``; ``video_id`` None when its name names no
    video, ``video`` None when the catalog does not know it."""

    path: Path
    mtime: float
    video_id: str | None
    video: VideoState | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one janitor run removes."""

    uploads: tuple[OpenUpload, ...] = ()
    work_dirs: tuple[str, ...] = ()
    """Video ids whose work directory goes."""
    staging_dirs: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.uploads or self.work_dirs or self.staging_dirs)


def upload_cutoff(now: float, ages: Ages) -> float:
    """Open uploads last updated before this are stale."""
    return now - ages.upload_expiry_s


def upload_expired(now: float, ages: Ages, upload: OpenUpload) -> bool:
    return upload.updated_at < upload_cutoff(now, ages)


def work_dir_expired(now: float, ages: Ages, video: VideoState | None) -> bool:
    """A live video FAILED since before the expiry. Unknown and deleted videos are left alone
    (deleting a video clears its work directory itself)."""
    return (
        video is not None
        and not video.deleted
        and video.status == "FAILED"
        and video.updated_at < now - ages.failed_work_expiry_s
    )


def staging_expired(now: float, ages: Ages, candidate: StagingCandidate) -> bool:
    """Old enough, and no job can be building it: its video is settled, deleted or unknown.
    A name that names no video is not the pipeline's and stays."""
    if candidate.video_id is None or candidate.mtime >= now - ages.staging_expiry_s:
        return False
    video = candidate.video
    return video is None or video.deleted or video.status in SETTLED


def staging_owner(name: str) -> str | None:
    """The video id a staging directory name starts with (``{video_id}.…``; ids hold no dot),
    or None for a name that is not one."""
    video_id, dot, rest = name.partition(".")
    return video_id if dot and rest and VIDEO_ID_RE.fullmatch(video_id) else None


def plan(
    now: float,
    ages: Ages,
    *,
    uploads: Iterable[OpenUpload] = (),
    work_dirs: Iterable[WorkDirCandidate] = (),
    staging: Iterable[StagingCandidate] = (),
) -> Plan:
    """Everything of the candidates that is due for removal at ``now``."""
    return Plan(
        uploads=tuple(u for u in uploads if upload_expired(now, ages, u)),
        work_dirs=tuple(w.video_id for w in work_dirs if work_dir_expired(now, ages, w.video)),
        staging_dirs=tuple(s.path for s in staging if staging_expired(now, ages, s)),
    )

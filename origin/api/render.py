"""The catalog's rows as the API's JSON, without I/O (the shapes of :mod:`origin.api.openapi`).

Internal fields stay inside: a video's ``source_path``, an upload's ``temp_path``, a job's payload,
result and lease owner. A failure reason (a tool's error output, with the origin's paths) goes
only to callers with a token: anonymous readers get :data:`HIDDEN_REASON` instead
(``reasons=False``). Times are float unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from origin.catalog import (
    Job,
    JobCounts,
    PublishedFile,
    Rendition,
    SearchHit,
    Upload,
    Video,
    VideoDetail,
    VideoPage,
)

API_PREFIX = "/api/v1"
HIDDEN_REASON = "the video could not be processed"
"""``failure_reason`` of a FAILED video as anonymous readers see it."""


def upload_url(upload_id: str) -> str:
    return f"{API_PREFIX}/uploads/{upload_id}"


def video_url(video_id: str) -> str:
    return f"{API_PREFIX}/videos/{video_id}"


def video_json(v: Video, *, reasons: bool = True) -> dict[str, Any]:
    """``reasons``: whether the caller may read why the video failed."""
    reason = v.failure_reason
    if reason is not None and not reasons:
        reason = HIDDEN_REASON
    return {
        "video_id": v.video_id,
        "title": v.title,
        "description": v.description,
        "tags": list(v.tags),
        "status": v.status,
        "failure_reason": reason,
        "duration_s": v.duration_s,
        "width": v.width,
        "height": v.height,
        "view_count": v.view_count,
        "created_at": v.created_at,
        "updated_at": v.updated_at,
        "published_at": v.published_at,
        "deleted_at": v.deleted_at,
    }


def rendition_json(r: Rendition) -> dict[str, Any]:
    return {
        "name": r.name,
        "kind": r.kind,
        "codec": r.codec,
        "width": r.width,
        "height": r.height,
        "bitrate_bps": r.bitrate_bps,
        "average_bitrate_bps": r.average_bitrate_bps,
        "codecs_string": r.codecs_string,
        "language": r.language,
    }


def file_json(f: PublishedFile) -> dict[str, Any]:
    return {"path": f.path, "size": f.size, "rendition": f.rendition}


def detail_json(d: VideoDetail, *, reasons: bool = True) -> dict[str, Any]:
    return video_json(d.video, reasons=reasons) | {
        "renditions": [rendition_json(r) for r in d.renditions],
        "files": [file_json(f) for f in d.files],
    }


def page_json(page: VideoPage, *, reasons: bool = True) -> dict[str, Any]:
    return {
        "videos": [video_json(v, reasons=reasons) for v in page.videos],
        "next_cursor": page.next_cursor,
    }


def search_json(query: str, hits: Sequence[SearchHit], *, reasons: bool = True) -> dict[str, Any]:
    return {
        "query": query,
        "hits": [{"score": h.score, "video": video_json(h.video, reasons=reasons)} for h in hits],
    }


def upload_json(u: Upload) -> dict[str, Any]:
    return {
        "upload_id": u.upload_id,
        "upload_url": upload_url(u.upload_id),
        "status": u.status,
        "size": u.size,
        "received": u.received,
        "sha256": u.sha256_expected,
        "sha256_actual": u.sha256_actual,
        "title": u.title,
        "description": u.description,
        "tags": list(u.tags),
        "video_id": u.video_id,
        "video_url": video_url(u.video_id) if u.video_id else None,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    }


def job_json(j: Job) -> dict[str, Any]:
    return {
        "job_id": j.job_id,
        "kind": j.kind,
        "key": j.key,
        "state": j.state,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "not_before": j.not_before,
        "lease_expires_at": j.lease_expires_at,
        "last_error": j.last_error,
        "errors": [dict(e) for e in j.error_log],
        "created_at": j.created_at,
        "updated_at": j.updated_at,
    }


def counts_json(c: JobCounts) -> dict[str, int]:
    return {
        "queued": c.queued,
        "leased": c.leased,
        "done": c.done,
        "failed": c.failed,
        "total": c.total,
    }


def stage_counts(jobs: Sequence[Job]) -> dict[str, JobCounts]:
    """Jobs per kind and state, stages in the order their first job was enqueued."""
    tally: dict[str, dict[str, int]] = {}
    for job in jobs:
        states = tally.setdefault(job.kind, {})
        states[job.state] = states.get(job.state, 0) + 1
    return {kind: JobCounts(**states) for kind, states in tally.items()}


def percent(video: Video, counts: Mapping[str, JobCounts]) -> float:
    """Share of the jobs enqueued so far that are done, 0..100.

    Later stages add jobs as earlier ones finish, so the number can move back; it reaches 100
    only when the video is READY (a finished last job still has publishing ahead of it).
    """
    if video.status == "READY":
        return 100.0
    total = JobCounts.sum(counts.values())
    if total.total == 0:
        return 0.0
    return min(99.0, round(100.0 * total.done / total.total, 1))


def stage(jobs: Sequence[Job]) -> str | None:
    """The kind of the oldest job not yet done (the stage the video is in), else None."""
    for job in jobs:
        if job.state != "done":
            return job.kind
    return None


def progress_json(video: Video, jobs: Sequence[Job]) -> dict[str, Any]:
    """``GET /videos/{id}/jobs``: where the pipeline is, per stage and per job (``jobs`` in
    enqueue order, as :meth:`Catalog.list_jobs` returns them)."""
    counts = stage_counts(jobs)
    return {
        "video_id": video.video_id,
        "status": video.status,
        "failure_reason": video.failure_reason,
        "percent": percent(video, counts),
        "stage": stage(jobs),
        "stages": {kind: counts_json(c) for kind, c in counts.items()},
        "jobs": [job_json(j) for j in jobs],
    }

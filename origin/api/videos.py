"""The catalog side of the API (DESIGN.md "Origin catalog API"): list, detail, edit, delete,
pipeline progress, re-run, search and view counts.

```
GET    /api/v1/videos?status=&updated_since=&limit=&cursor=&include_deleted=   a page
GET    /api/v1/videos/{video_id}          with renditions and published files
PATCH  /api/v1/videos/{video_id}          {title?, description?, tags?}
DELETE /api/v1/videos/{video_id}          tombstone in the catalog, files removed from storage
GET    /api/v1/videos/{video_id}/jobs     status, percent, counts per stage, every job
POST   /api/v1/videos/{video_id}/rerun    FAILED only (else 409): back to PENDING, from the probe
POST   /api/v1/videos/{video_id}/views    {count?}: add views, answer the new count
GET    /api/v1/search?q=&limit=&status=   FTS5, best match first
```

A delete removes the catalog's record first (the control plane stops placing the title), then
the published files, the uploaded source, the staging directories and the work directory of a
pipeline that was still running (its next catalog call finds the video gone; a publish that
renamed its title into place meanwhile takes it away again). Deleting a deleted video again
redoes the file removal and answers 200, so a delete whose file removal failed can simply be
retried. A re-run first removes what the failed run left (a title renamed into place whose
publication was never recorded, staging and work directories): publishing never replaces a
title in place.

Anonymous readers (``api.public_read``, no token) see whether a video FAILED but not why: the
reason may quote a tool's error output with the origin's paths.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from origin.api.auth import anonymous
from origin.api.boundary import read_json, run_catalog
from origin.api.errors import ApiError, json_response
from origin.api.input import (
    check_id,
    parse_list_query,
    parse_search_query,
    parse_video_patch,
    parse_views,
)
from origin.api.render import (
    detail_json,
    file_json,
    page_json,
    progress_json,
    search_json,
    video_json,
)
from origin.api.upload_files import remove_source
from origin.catalog import Catalog, NotFound, PublishedFile
from origin.pipeline.start import first_jobs
from origin.pipeline.workdir import remove_pipeline_files
from origin.storage import MediaWriter

log = logging.getLogger("origin.api.videos")


@dataclass(frozen=True, slots=True)
class VideoSettings:
    sources: Path
    """Uploaded sources, removed with their video."""
    max_attempts: int
    """Attempts of each job a re-run enqueues."""
    work_dir: Path | None = None
    """``pipeline.work_dir``: a deleted or re-run video's intermediate files are removed from
    ``{work_dir}/{video_id}`` (None: left for the operator)."""


class VideoRoutes:
    """The catalog handlers, bound to one catalog and the media storage."""

    def __init__(self, catalog: Catalog, storage: MediaWriter, settings: VideoSettings) -> None:
        self._catalog = catalog
        self._storage = storage
        self._settings = settings

    async def list(self, request: web.Request) -> web.Response:
        q = parse_list_query(request.query)
        page = await run_catalog(
            self._catalog.list_videos,
            status=q.status,
            updated_since=q.updated_since,
            limit=q.limit,
            cursor=q.cursor,
            include_deleted=q.include_deleted,
        )
        return json_response(page_json(page, reasons=_reasons(request)))

    async def get(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        detail = await run_catalog(self._catalog.video_detail, video_id)
        return json_response(detail_json(detail, reasons=_reasons(request)))

    async def patch(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        change = parse_video_patch(await read_json(request))
        video = await run_catalog(
            self._catalog.update_video,
            video_id,
            title=change.title,
            description=change.description,
            tags=change.tags,
        )
        return json_response(video_json(video))

    async def delete(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        files: tuple[PublishedFile, ...] = ()
        try:
            files = await run_catalog(self._catalog.delete_video, video_id)
        except ApiError as e:
            if not isinstance(e.__cause__, NotFound):
                raise
            # Deleted before (or never there): a tombstone means "finish the removal".
            await run_catalog(self._catalog.get_video, video_id, include_deleted=True)
        try:
            removed = await self._storage.remove_video(video_id)
            await asyncio.to_thread(remove_source, self._settings.sources, video_id)
            await self._remove_pipeline_files(video_id)
        except OSError as e:
            log.error("cannot remove video files", extra={"video_id": video_id, "error": str(e)})
            raise ApiError(
                500, "storage_error", "the video is deleted but its files are not; retry"
            ) from e
        log.info("video deleted", extra={"video_id": video_id, "files": len(files)})
        return json_response(
            {
                "video_id": video_id,
                "deleted": True,
                "media_removed": removed,
                "files": [file_json(f) for f in files],
            }
        )

    async def jobs(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        catalog = self._catalog
        # One hop for both reads: ingest polls this every few seconds.
        video, jobs = await run_catalog(
            lambda: (catalog.get_video(video_id), catalog.list_jobs(video_id))
        )
        return json_response(progress_json(video, jobs))

    async def rerun(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        video = await run_catalog(self._catalog.get_video, video_id)
        if video.status == "FAILED":
            # Only a re-run (or a delete) moves a video out of FAILED, and no pipeline step
            # runs for it: what the failed run left can go before the new run starts.
            try:
                stale = await self._storage.remove_video(video_id)
                await self._remove_pipeline_files(video_id)
            except OSError as e:
                log.error(
                    "cannot clear a failed run", extra={"video_id": video_id, "error": str(e)}
                )
                raise ApiError(
                    500, "storage_error", "the failed run's files cannot be removed; retry"
                ) from e
            if stale:
                log.info("stale title removed before a re-run", extra={"video_id": video_id})
        video = await run_catalog(
            self._catalog.rerun, video_id, jobs=first_jobs(self._settings.max_attempts)
        )
        log.info("video re-run", extra={"video_id": video_id})
        return json_response(video_json(video))

    async def views(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        count = parse_views(await read_json(request, optional=True))
        total = await run_catalog(self._catalog.increment_views, video_id, count)
        return json_response({"video_id": video_id, "view_count": total})

    async def search(self, request: web.Request) -> web.Response:
        q = parse_search_query(request.query)
        hits = await run_catalog(self._catalog.search, q.q, limit=q.limit, status=q.status)
        return json_response(search_json(q.q, hits, reasons=_reasons(request)))

    async def _remove_pipeline_files(self, video_id: str) -> None:
        """The video's staging directories and, when configured, its work directory."""
        if self._settings.work_dir is None:
            await self._storage.remove_staging(video_id)
        else:
            await remove_pipeline_files(self._storage, self._settings.work_dir, video_id)


def _reasons(request: web.Request) -> bool:
    """Whether the answer may say why a video failed: not to anonymous readers."""
    return not anonymous(request.headers.get(hdrs.AUTHORIZATION))


def _video_id(request: web.Request) -> str:
    return check_id(request.match_info["video_id"], "video id")

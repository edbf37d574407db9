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
the published files and the uploaded source. Deleting a deleted video again redoes the file
removal and answers 200, so a delete whose file removal failed can simply be retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

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
from origin.storage import MediaWriter

log = logging.getLogger("origin.api.videos")


@dataclass(frozen=True, slots=True)
class VideoSettings:
    sources: Path
    """Uploaded sources, removed with their video."""
    max_attempts: int
    """Attempts of each job a re-run enqueues."""


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
        return json_response(page_json(page))

    async def get(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
        detail = await run_catalog(self._catalog.video_detail, video_id)
        return json_response(detail_json(detail))

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
        video = await run_catalog(self._catalog.get_video, video_id)
        jobs = await run_catalog(self._catalog.list_jobs, video_id)
        return json_response(progress_json(video, jobs))

    async def rerun(self, request: web.Request) -> web.Response:
        video_id = _video_id(request)
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
        return json_response(search_json(q.q, hits))


def _video_id(request: web.Request) -> str:
    return check_id(request.match_info["video_id"], "video id")

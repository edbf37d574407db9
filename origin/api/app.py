"""The API as an aiohttp sub-application mounted at ``/api/v1``: route table, auth, JSON errors.

Each route has a name (the OpenAPI ``operationId``) and an :class:`~origin.api.auth.Access`; the
middleware checks the bearer token before the handler runs and turns every error into the JSON
body of :mod:`origin.api.errors` (unknown paths and methods too). An exception a handler did not
expect is logged and answered 500 without details; input never gets there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry

from origin.api import openapi
from origin.api.auth import Access, check
from origin.api.errors import ApiError, error_response, json_response
from origin.api.render import API_PREFIX
from origin.api.uploads import UploadRoutes, UploadSettings
from origin.api.videos import VideoRoutes, VideoSettings
from origin.catalog import Catalog, CatalogError
from origin.config import OriginConfig
from origin.metrics.serve import ServeMetrics
from origin.storage import MediaWriter
from vodedge import __version__

log = logging.getLogger("origin.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """What the API takes from the configuration (see :class:`origin.config.ApiConfig`)."""

    tokens: tuple[str, ...]
    public_read: bool
    max_upload_size: int
    upload_dir: Path
    sources: Path
    max_attempts: int
    part_idle_timeout_s: float = 60.0
    work_dir: Path | None = None
    """The pipeline's work directory: DELETE and re-run clear ``{work_dir}/{video_id}``."""

    @classmethod
    def from_config(cls, cfg: OriginConfig) -> ApiSettings:
        """Paths are made absolute here, once: the catalog records where sources lie."""
        return cls(
            tokens=cfg.api.tokens,
            public_read=cfg.api.public_read,
            max_upload_size=cfg.api.max_upload_size,
            upload_dir=cfg.api.upload_dir.absolute(),
            sources=cfg.media.sources.absolute(),
            max_attempts=cfg.pipeline.max_attempts,
            part_idle_timeout_s=cfg.api.part_idle_timeout_s,
            work_dir=cfg.pipeline.work_dir.absolute(),
        )


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    """Below ``/api/v1``."""
    handler: Handler
    name: str
    """The OpenAPI operationId."""
    access: Access


def routes(
    catalog: Catalog, storage: MediaWriter, settings: ApiSettings, metrics: ServeMetrics
) -> list[Route]:
    uploads = UploadRoutes(
        catalog,
        UploadSettings(
            max_upload_size=settings.max_upload_size,
            upload_dir=settings.upload_dir,
            sources=settings.sources,
            max_attempts=settings.max_attempts,
            part_idle_timeout_s=settings.part_idle_timeout_s,
        ),
        metrics,
    )
    videos = VideoRoutes(
        catalog,
        storage,
        VideoSettings(
            sources=settings.sources,
            max_attempts=settings.max_attempts,
            work_dir=settings.work_dir,
        ),
    )
    document = openapi.document(__version__)

    async def get_openapi(_r: web.Request) -> web.Response:
        return json_response(document)

    token, public, open_ = Access.TOKEN, Access.PUBLIC_READ, Access.OPEN
    get, post, put, patch, delete, head = (
        hdrs.METH_GET,
        hdrs.METH_POST,
        hdrs.METH_PUT,
        hdrs.METH_PATCH,
        hdrs.METH_DELETE,
        hdrs.METH_HEAD,
    )
    upload, video = "/uploads/{upload_id}", "/videos/{video_id}"
    return [
        Route(get, "/openapi.json", get_openapi, "getOpenApi", open_),
        Route(post, "/uploads", uploads.create, "createUpload", token),
        Route(get, upload, uploads.status, "getUpload", token),
        Route(head, upload, uploads.status, "getUploadOffset", token),
        Route(put, upload, uploads.put_part, "putUploadPart", token),
        Route(delete, upload, uploads.abort, "abortUpload", token),
        Route(post, upload + "/complete", uploads.complete, "completeUpload", token),
        Route(get, "/videos", videos.list, "listVideos", public),
        Route(get, video, videos.get, "getVideo", public),
        Route(patch, video, videos.patch, "updateVideo", token),
        Route(delete, video, videos.delete, "deleteVideo", token),
        Route(get, video + "/jobs", videos.jobs, "getVideoJobs", token),
        Route(post, video + "/rerun", videos.rerun, "rerunVideo", token),
        Route(post, video + "/views", videos.views, "addVideoViews", token),
        Route(get, "/search", videos.search, "searchVideos", public),
    ]


def make_api(
    catalog: Catalog,
    storage: MediaWriter,
    settings: ApiSettings,
    metrics: ServeMetrics | None = None,
) -> web.Application:
    """The API application; mount it with :func:`mount`. ``metrics``: those of the app it is
    mounted in (a private registry when None)."""
    metrics = metrics or ServeMetrics(CollectorRegistry())
    table = routes(catalog, storage, settings, metrics)
    access = {r.name: r.access for r in table}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            name = request.match_info.route.name
            check(
                access.get(name or "", Access.TOKEN),
                request.headers.get(hdrs.AUTHORIZATION),
                settings.tokens,
                settings.public_read,
            )
            return await handler(request)
        except ApiError as e:
            if e.status >= 500 and isinstance(e.__cause__, CatalogError):
                metrics.catalog_error()
            return error_response(e)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_response(_from_http(e))
        except asyncio.CancelledError:
            raise
        except Exception:
            where = {"method": request.method, "path": request.path}
            log.exception("unexpected error", extra=where)
            return error_response(ApiError(500, "internal", "unexpected error; see the log"))

    api = web.Application(middlewares=[guard])
    for r in table:
        api.router.add_route(r.method, r.path, r.handler, name=r.name)
    return api


def _from_http(e: web.HTTPException) -> ApiError:
    """aiohttp's own refusals (no route, wrong method, body too large) as JSON errors."""
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    headers: dict[str, Any] = {}
    if allow := e.headers.get(hdrs.ALLOW):
        headers[hdrs.ALLOW] = allow
    return ApiError(e.status, codes.get(e.status, "bad_request"), e.reason, headers=headers)


def mount(app: web.Application, api: web.Application) -> None:
    """Add the API under :data:`~origin.api.render.API_PREFIX` (before any catch-all route)."""
    app.add_subapp(API_PREFIX, api)

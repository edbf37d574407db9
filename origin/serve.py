"""The origin's HTTP side: ``GET``/``HEAD /v/{video_id}/...`` of published files, ``/healthz``,
``/metrics`` (:mod:`origin.metrics`; no token, like ``/v/``) and the API under ``/api/v1``
(:mod:`origin.api`) when :func:`make_app` is given one.

Per request: validate the raw path (400), open the object in one worker-thread hop (404 when
missing), decide the answer with the pure :func:`plan_response`, then send the bytes with
``loop.sendfile`` (zero copy) or, where the loop has no sendfile (uvloop), in bounded chunks
read off the loop. No file is ever read whole into memory.

Answers: 200 / 206 (single Range) / 304 (If-None-Match, If-Modified-Since) / 400 (bad path,
malformed Range) / 404 / 416 / 500 (:class:`origin.storage.StorageError`). Every published file
is immutable, so every answer for one carries the same validators and Cache-Control.

Lifecycle (:func:`serving`, :func:`serve_until`): bind every listen address, serve until
``stop`` is set, then stop accepting, let requests in flight finish for up to
:data:`SHUTDOWN_TIMEOUT` seconds, close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CollectorRegistry

from origin.api import mount
from origin.metrics.http import count_requests, metrics_handler
from origin.metrics.serve import ServeMetrics
from origin.storage import MediaStorage, ObjectInfo, OpenObject, StorageError, run_read
from vodedge.httpspec import (
    IMMUTABLE_CACHE_CONTROL,
    UNSATISFIABLE,
    ByteRange,
    RangeError,
    content_type_for,
    http_date,
    if_range_matches,
    not_modified,
    parse_range,
)
from vodedge.paths import PathError, parse_object_path

log = logging.getLogger("origin.serve")
access_log = logging.getLogger("origin.access")

SHUTDOWN_TIMEOUT = 10.0
"""Seconds in-flight requests may take to finish after SIGTERM before connections close."""

COPY_CHUNK = 256 * 1024
"""Bytes per read when the event loop cannot sendfile (uvloop); bounds memory per response."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to answer for one object: status, headers and which bytes (None: no body)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: ByteRange | None = None
    text: str = ""
    """Short plain-text body for error answers."""


def validators(info: ObjectInfo) -> dict[str, str]:
    """Headers every answer about a published file carries, 304 included."""
    return {
        hdrs.ETAG: info.etag,
        hdrs.LAST_MODIFIED: http_date(info.mtime),
        hdrs.CACHE_CONTROL: IMMUTABLE_CACHE_CONTROL,
        hdrs.ACCEPT_RANGES: "bytes",
    }


def plan_response(
    method: str, request_headers: Mapping[str, str], key: str, info: ObjectInfo
) -> Plan:
    """Decide the answer to GET/HEAD of ``key`` (RFC 9110 13.2.2 order); pure."""
    headers = validators(info)
    if not_modified(
        request_headers.get(hdrs.IF_NONE_MATCH),
        request_headers.get(hdrs.IF_MODIFIED_SINCE),
        info.etag,
        info.mtime,
    ):
        return Plan(304, headers)
    headers[hdrs.CONTENT_TYPE] = content_type_for(key)
    whole = ByteRange(0, info.size - 1, info.size) if info.size else None
    range_header = request_headers.get(hdrs.RANGE)
    if method != hdrs.METH_GET or range_header is None:
        # Range is defined for GET only (RFC 9110 14.2); HEAD mirrors the 200 answer.
        return Plan(200, {**headers, hdrs.CONTENT_LENGTH: str(info.size)}, whole)
    try:
        wanted = parse_range(range_header, info.size)
    except RangeError as e:
        return Plan(400, {hdrs.CONTENT_TYPE: "text/plain"}, text=f"bad Range: {e}\n")
    if not if_range_matches(request_headers.get(hdrs.IF_RANGE), info.etag, info.mtime):
        wanted = None  # the client's copy is outdated: send the whole current object
    if wanted is UNSATISFIABLE:
        headers[hdrs.CONTENT_RANGE] = f"bytes */{info.size}"
        headers[hdrs.CONTENT_LENGTH] = "0"
        return Plan(416, headers)
    if isinstance(wanted, ByteRange):
        headers[hdrs.CONTENT_RANGE] = wanted.content_range()
        headers[hdrs.CONTENT_LENGTH] = str(wanted.size)
        return Plan(206, headers, wanted)
    return Plan(200, {**headers, hdrs.CONTENT_LENGTH: str(info.size)}, whole)


class ObjectResponse(web.StreamResponse):
    """A response whose body is a byte range of an open file; counts what it sent."""

    sent = 0

    async def send_file_range(
        self, request: web.BaseRequest, obj: OpenObject, part: ByteRange
    ) -> None:
        await self.prepare(request)
        loop = asyncio.get_running_loop()
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("client went away before the body")
        try:
            self.sent = await loop.sendfile(transport, obj.file, part.start, part.size)
        except NotImplementedError:  # uvloop: no sendfile; copy in bounded chunks
            await self._copy(obj, part)
        await self.write_eof()

    async def _copy(self, obj: OpenObject, part: ByteRange) -> None:
        offset, end = part.start, part.end + 1
        while offset < end:
            chunk = await run_read(os.pread, obj.fileno(), min(COPY_CHUNK, end - offset), offset)
            if not chunk:
                raise StorageError(f"file shorter than its size at byte {offset}")
            await self.write(chunk)
            offset += len(chunk)
            self.sent += len(chunk)


class AccessLogger(AbstractAccessLogger):
    """One structured line per request (``origin.access`` logger, fields as JSON keys)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if isinstance(response, ObjectResponse):
            sent = response.sent
        else:
            sent = response.content_length or 0  # body_length would count the head too
        extra: dict[str, object] = {
            "method": request.method,
            "path": request.raw_path,
            "status": response.status,
            "bytes": sent,
            "duration_ms": round(time * 1000, 3),
            "remote": request.remote,
        }
        if (rng := request.headers.get(hdrs.RANGE)) is not None:
            extra["range"] = rng
        self.logger.info("request", extra=extra)


class OriginRoutes:
    """Request handlers bound to one storage."""

    def __init__(self, storage: MediaStorage, metrics: ServeMetrics) -> None:
        self._storage = storage
        self._metrics = metrics

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def get_object(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.partition("?")[0]
        try:
            parsed = parse_object_path(raw_path)
        except PathError as e:
            return web.Response(status=400, text=f"bad path: {e}\n")
        if parsed.token is not None:
            return web.Response(status=400, text="bad path: the origin serves /v/... only\n")
        try:
            obj = await self._storage.open(parsed.key)
        except StorageError as e:
            log.error("cannot read object", extra={"path": parsed.key, "error": str(e)})
            return web.Response(status=500, text="cannot read object\n")
        if obj is None:
            return web.Response(status=404, text="not found\n")
        with obj:
            plan = plan_response(request.method, request.headers, parsed.key, obj.info)
            if plan.text:
                return web.Response(status=plan.status, text=plan.text)
            response = ObjectResponse(status=plan.status, headers=plan.headers)
            if plan.body is None or request.method != hdrs.METH_GET:
                await response.prepare(request)
                await response.write_eof()
            else:
                await response.send_file_range(request, obj, plan.body)
                self._metrics.served(response.sent)
            return response


def make_app(
    storage: MediaStorage,
    api: web.Application | None = None,
    metrics: ServeMetrics | None = None,
) -> web.Application:
    """Static ``/v/...`` serving, ``/healthz`` and ``/metrics`` (``metrics.registry``; a
    private registry when no metrics are given); with ``api`` (:func:`origin.api.make_api`,
    given the same metrics), the API under ``/api/v1`` too. Every request is counted."""
    metrics = metrics or ServeMetrics(CollectorRegistry())
    routes = OriginRoutes(storage, metrics)
    app = web.Application(middlewares=[count_requests(metrics)])
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/metrics", metrics_handler(metrics.registry))
    if api is not None:
        mount(app, api)  # before the catch-all below
    # allow_head: HEAD mirrors GET. Two routes to one handler (it parses the raw path itself)
    # so that the metrics tell /v/ objects ("/v/{key}") from stray paths ("/{tail}", 400/404).
    app.router.add_get("/v/{key:.*}", routes.get_object)
    app.router.add_get("/{tail:.*}", routes.get_object)
    return app


@asynccontextmanager
async def serving(
    app: web.Application,
    listen: Sequence[tuple[str, int]],
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    requests_log: logging.Logger | None = access_log,
) -> AsyncIterator[list[str]]:
    """Bind ``app`` on every address (``OSError`` if one is taken) and serve it inside the
    block, which gets the bound addresses; on leaving, stop accepting, let requests in flight
    finish for up to ``shutdown_timeout`` seconds and close. ``requests_log`` None: no access
    log (the worker's metrics listener)."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        access_log=requests_log,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        for host, port in listen:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        bound = [_address(sockname) for sockname in runner.addresses]
        for address in bound:
            log.info("listening", extra={"address": address})
        yield bound
    finally:
        await runner.cleanup()


def _address(sockname: Sequence[Any]) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_until(
    app: web.Application,
    listen: tuple[tuple[str, int], ...],
    stop: asyncio.Event,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> None:
    """Serve ``app`` on every address until ``stop`` is set, then shut down gracefully."""
    async with serving(app, listen, shutdown_timeout):
        await stop.wait()
        log.info("stopping", extra={"shutdown_timeout": shutdown_timeout})

"""The admin API's HTTP layer: auth, JSON errors, routing to the supervisor (the backend).

Handlers stay thin: input rules are in :mod:`appliance.admin.requests`, the work in the
backend. ``/healthz``, ``/metrics`` and ``/admin/v1/openapi.json`` are open (health checks and
Prometheus scrape them); everything else needs ``Authorization: Bearer <admin.token>``,
compared in constant time. A refused request changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from appliance.admin.openapi import document
from appliance.admin.requests import (
    BadRequest,
    decode_cursor,
    encode_cursor,
    parse_contents_query,
    parse_limit,
    parse_prefill,
    parse_purge,
)
from appliance.config import PrefillConfig
from appliance.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from appliance.prefill_runner import PrefillManager, TooManyJobs, UnknownJob
from vodedge import __version__
from vodedge.bearer import bearer_ok, challenge

log = logging.getLogger("appliance.admin")

OPEN_PATHS = frozenset({"/healthz", "/metrics", "/admin/v1/openapi.json"})
MAX_BODY = 32 * 2**20


class AdminBackend(Protocol):
    prefill: PrefillManager

    def admin_token(self) -> str: ...
    def prefill_config(self) -> PrefillConfig: ...
    def health(self) -> tuple[bool, str]: ...
    def render_metrics(self) -> bytes: ...
    async def status(self) -> dict[str, Any]: ...
    async def set_draining(self, draining: bool) -> str: ...
    async def purge(self, keys: list[str], prefixes: list[str]) -> dict[str, int]: ...
    async def contents(
        self, prefix: str, after: str | None, limit: int
    ) -> list[dict[str, Any]]: ...
    async def titles(self) -> dict[str, tuple[int, int]]: ...


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, separators=(",", ":")),
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_admin_app(backend: AdminBackend) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not bearer_ok(
            request.headers.get("Authorization"), backend.admin_token()
        ):
            return _error(401, "missing or wrong admin token", {"WWW-Authenticate": challenge()})
        try:
            return await handler(request)
        except BadRequest as e:
            return _error(400, str(e))
        except web.HTTPException as e:
            if e.status >= 400:
                allow = e.headers.get("Allow")
                return _error(e.status, e.reason, {"Allow": allow} if allow else None)
            raise

    async def body_json(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise BadRequest("body is not valid JSON") from None

    async def healthz(_r: web.Request) -> web.Response:
        ok, text = backend.health()
        return web.Response(status=200 if ok else 503, text=text + "\n")

    async def metrics(_r: web.Request) -> web.Response:
        return web.Response(
            body=backend.render_metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    spec = document(__version__)

    async def openapi(_r: web.Request) -> web.Response:
        return _json(spec)

    async def status(_r: web.Request) -> web.Response:
        return _json(await backend.status())

    async def prefill_create(request: web.Request) -> web.Response:
        spec_ = parse_prefill(await body_json(request), backend.prefill_config())
        try:
            job = await backend.prefill.submit(spec_)
        except TooManyJobs as e:
            return _error(429, str(e), {"Retry-After": "60"})
        loc = f"/admin/v1/prefill/{job.id}"
        return _json({"job_id": job.id, "location": loc}, 202, {"Location": loc})

    async def prefill_list(_r: web.Request) -> web.Response:
        return _json({"jobs": [j.summary() for j in backend.prefill.jobs.values()]})

    def job_id(request: web.Request) -> str:
        jid = request.match_info["job_id"]
        if len(jid) != 16 or any(c not in "0123456789abcdef" for c in jid):
            raise web.HTTPNotFound(reason="no such prefill job")
        return jid

    async def prefill_get(request: web.Request) -> web.Response:
        try:
            return _json(backend.prefill.get(job_id(request)).detail(time.time()))
        except UnknownJob:
            return _error(404, "no such prefill job")

    async def prefill_cancel(request: web.Request) -> web.Response:
        try:
            job = await backend.prefill.cancel(job_id(request))
        except UnknownJob:
            return _error(404, "no such prefill job")
        return _json(job.detail(time.time()))

    async def purge(request: web.Request) -> web.Response:
        keys, prefixes = parse_purge(await body_json(request))
        result = await backend.purge(keys, prefixes)
        log.info("purge", extra={"paths": len(keys), "prefixes": prefixes[:10], **result})
        return _json(result)

    async def contents(request: web.Request) -> web.Response:
        prefix, after, limit = parse_contents_query(request.query)
        objects = await backend.contents(prefix, after, limit + 1)
        more = len(objects) > limit
        objects = objects[:limit]
        nxt = encode_cursor(objects[-1]["path"]) if more and objects else None
        return _json({"objects": objects, "next_cursor": nxt})

    async def titles(request: web.Request) -> web.Response:
        after = decode_cursor(request.query.get("cursor"))
        limit = parse_limit(request.query)
        held = await backend.titles()
        ids = sorted(v for v in held if after is None or v > after)
        page = ids[:limit]
        nxt = encode_cursor(page[-1]) if len(ids) > limit else None
        return _json(
            {
                "titles": [{"video_id": v, "bytes": held[v][0], "files": held[v][1]} for v in page],
                "next_cursor": nxt,
            }
        )

    async def drain(_r: web.Request) -> web.Response:
        return _json({"state": await backend.set_draining(True)})

    async def undrain(_r: web.Request) -> web.Response:
        return _json({"state": await backend.set_draining(False)})

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/admin/v1/openapi.json", openapi)
    r.add_get("/admin/v1/status", status)
    r.add_post("/admin/v1/prefill", prefill_create)
    r.add_get("/admin/v1/prefill", prefill_list)
    r.add_get("/admin/v1/prefill/{job_id}", prefill_get)
    r.add_delete("/admin/v1/prefill/{job_id}", prefill_cancel)
    r.add_post("/admin/v1/purge", purge)
    r.add_get("/admin/v1/contents", contents)
    r.add_get("/admin/v1/titles", titles)
    r.add_post("/admin/v1/drain", drain)
    r.add_post("/admin/v1/undrain", undrain)
    return app

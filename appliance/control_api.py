"""The supervisor's control calls into a worker, on the worker's peer unix socket.

``/ctl/*`` routes are added to the peer application (:mod:`appliance.peer`); the socket is in
the run directory and reachable only by the appliance's own user. Bodies are JSON; the
supervisor validated everything before asking, so errors here are 400 only for a malformed
call. The client side is :class:`appliance.control.WorkerControl`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance.config import load_snapshot

if TYPE_CHECKING:
    from appliance.worker import Worker


def _json(data: Any) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")), content_type="application/json"
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be an object")
    return data


def add_control_routes(app: web.Application, w: Worker) -> None:
    async def stats(_request: web.Request) -> web.Response:
        return _json(w.stats())

    async def titles(request: web.Request) -> web.Response:
        return _json(w.titles(request.query.get("reset_requests") == "1"))

    async def purge(request: web.Request) -> web.Response:
        body = await _body(request)
        objects, nbytes = await w.purge(list(body.get("paths", [])), list(body.get("prefixes", [])))
        return _json({"objects": objects, "bytes": nbytes})

    async def contents(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise web.HTTPBadRequest(text="limit") from None
        found = await w.store.contents(q.get("prefix", "/v/"), q.get("after"), limit)
        return _json(
            [
                {
                    "path": key,
                    "size": meta.length,
                    "content_type": meta.content_type,
                    "etag": meta.etag,
                    "stored_at": meta.stored_at,
                    "disk": str(disk.path),
                }
                for key, meta, disk in found
            ]
        )

    async def drain(request: web.Request) -> web.Response:
        body = await _body(request)
        w.set_draining(bool(body.get("draining")))
        return _json({"draining": w.draining})

    async def reload(request: web.Request) -> web.Response:
        body = await _body(request)
        cfg = load_snapshot(w.cfg.run_dir / str(body.get("snapshot", "config.json")))
        w.reload(cfg)
        return _json({"config_digest": cfg.digest})

    async def prefill(request: web.Request) -> web.Response:
        body = await _body(request)
        return _json(
            await w.prefill_one(str(body["key"]), str(body["job"]), str(body["rate_file"]))
        )

    async def prefill_cancel(request: web.Request) -> web.Response:
        body = await _body(request)
        return _json({"cancelled": w.cancel_prefill(str(body["job"]))})

    app.router.add_get("/ctl/stats", stats)
    app.router.add_get("/ctl/titles", titles)
    app.router.add_post("/ctl/purge", purge)
    app.router.add_get("/ctl/contents", contents)
    app.router.add_post("/ctl/drain", drain)
    app.router.add_post("/ctl/reload", reload)
    app.router.add_post("/ctl/prefill", prefill)
    app.router.add_post("/ctl/prefill_cancel", prefill_cancel)

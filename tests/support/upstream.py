"""A controllable upstream for fault tests, run as a real subprocess on loopback.

Serves files under ``--root`` at ``/v/...`` like an origin (Content-Length, strong ETag,
immutable Cache-Control), counts requests per path, and misbehaves on demand:

- ``POST /_mode`` JSON ``{"path": ..., "mode": ..., "arg": ...}`` sets a fault for a path
  (``"*"`` for all): ``delay`` (ms before the head), ``trickle`` (ms between 64 KiB pieces),
  ``truncate`` (send half the body then close), ``status`` (answer arg as status), ``stall``
  (send half then hang), ``short`` (declare the length but send fewer bytes), ``nolength``,
  ``headonly`` (send the head, then close before any body byte).
  ``once: true`` clears the fault after the first request.
- ``GET /_count?path=...`` -> ``{"count": n}``; ``GET /_count`` -> all counts.
- ``POST /_reset`` clears counts and faults.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import xxhash
from aiohttp import web

from vodedge.httpspec import IMMUTABLE_CACHE_CONTROL, content_type_for


def make_app(root: Path) -> web.Application:
    counts: Counter[str] = Counter()
    modes: dict[str, dict[str, Any]] = {}

    async def set_mode(request: web.Request) -> web.Response:
        body = await request.json()
        modes[body["path"]] = body
        return web.json_response({"ok": True})

    async def reset(request: web.Request) -> web.Response:
        counts.clear()
        modes.clear()
        return web.json_response({"ok": True})

    async def count(request: web.Request) -> web.Response:
        p = request.query.get("path")
        if p is None:
            return web.json_response(dict(counts))
        return web.json_response({"count": counts[p]})

    async def serve(request: web.Request) -> web.StreamResponse:
        path = request.path
        counts[path] += 1
        mode = modes.get(path) or modes.get("*")
        if mode and mode.get("once"):
            modes.pop(mode["path"], None)
        kind = mode["mode"] if mode else None
        arg = mode.get("arg") if mode else None
        if kind == "delay":
            await asyncio.sleep(float(arg) / 1000)
        if kind == "status":
            return web.Response(status=int(arg), text="fault\n")
        f = root / path.lstrip("/")
        if not f.is_file():
            return web.Response(status=404, text="not found\n")
        data = f.read_bytes()
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = content_type_for(path)
        resp.headers["ETag"] = f'"{xxhash.xxh3_128_hexdigest(data)}"'
        resp.headers["Cache-Control"] = IMMUTABLE_CACHE_CONTROL
        resp.headers["Last-Modified"] = "Tue, 03 Nov 2026 10:00:00 GMT"
        if kind != "nolength":
            resp.content_length = len(data)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if kind == "headonly":
            assert request.transport is not None
            request.transport.close()
            return resp
        if kind in ("truncate", "stall", "short"):
            await resp.write(data[: len(data) // 2])
            if kind == "stall":
                await asyncio.sleep(3600)
            assert request.transport is not None
            if kind == "truncate":
                request.transport.abort()
                return resp
            request.transport.close()
            return resp
        if kind == "trickle":
            for i in range(0, len(data), 65536):
                await resp.write(data[i : i + 65536])
                await asyncio.sleep(float(arg) / 1000)
        else:
            await resp.write(data)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/_mode", set_mode)
    app.router.add_post("/_reset", reset)
    app.router.add_get("/_count", count)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    app.router.add_route("GET", "/v/{tail:.*}", serve)
    app.router.add_route("HEAD", "/v/{tail:.*}", serve)
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--port", required=True, type=int)
    args = ap.parse_args()
    web.run_app(make_app(args.root), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()

"""Worker-to-worker miss routing over unix sockets.

A miss on a key owned by another worker is sent to the owner's socket
(``{run_dir}/worker-{i}.sock``) as ``GET /fill?key=…&range=…``: the owner joins (or starts) its
single-flight fill and streams back exactly the slice the request needs, with the object's facts
in the ``X-Fill-Head`` header; the requesting worker renders the client's response with the same
pure :func:`appliance.respond.plan`. Hits that other workers served reach the owner as
``POST /touch`` batches (msgpack ``{key: count}``) once a second.

The owner streams with a Content-Length, so a fill that breaks mid-body arrives as a short
body: the requester raises :class:`~appliance.fill.FillAborted` and aborts its client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgpack
from aiohttp import web

from appliance.fill import Fill, FillAborted, FillError, error_for_status
from appliance.respond import Conditions, ObjectFacts, Plan, plan
from vodedge.paths import PathError, parse_object_path

log = logging.getLogger("appliance.peer")


@dataclass
class MissResult:
    """A miss answered: a final status, and for 200/206 a body that streams as it fills."""

    status: int
    outcome: str  # "miss" | "collapsed" | "hit" (stored meanwhile) | "error"
    facts: ObjectFacts | None = None
    plan: Plan | None = None
    body: AsyncIterator[bytes | memoryview] | None = None
    detail: str = ""


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


def _facts_to_json(f: ObjectFacts, outcome: str) -> str:
    return json.dumps(
        [
            f.length,
            f.content_type,
            f.etag,
            f.last_modified,
            f.cache_control,
            f.stored_at,
            outcome,
        ],
        separators=(",", ":"),
    )


def _facts_from_json(s: str) -> tuple[ObjectFacts, str]:
    v = json.loads(s)
    return ObjectFacts(int(v[0]), v[1], v[2], float(v[3]), v[4], float(v[5])), str(v[6])


LocalMiss = Callable[[str, Conditions], Awaitable[MissResult]]
TouchSink = Callable[[dict[str, int]], None]


def make_peer_app(local_miss: LocalMiss, touch: TouchSink) -> web.Application:
    async def fill(request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            key = parse_object_path(q.get("key", "")).key
        except PathError as e:
            return web.Response(status=400, text=str(e))
        cond = Conditions(q.get("range"), q.get("if_range"), q.get("inm"), q.get("ims"))
        res = await local_miss(key, cond)
        if res.facts is None or res.plan is None:
            return web.Response(status=res.status, text=res.detail)
        resp = web.StreamResponse(status=200)
        resp.headers["X-Fill-Head"] = _facts_to_json(res.facts, res.outcome)
        body_len = res.plan.body_length if res.body is not None else 0
        resp.content_length = body_len
        await resp.prepare(request)
        if res.body is not None:
            try:
                async for piece in res.body:
                    await resp.write(piece)
            except FillError:
                # Short body with Content-Length: the peer sees the abort.
                if request.transport is not None:
                    request.transport.abort()
                return resp
        await resp.write_eof()
        return resp

    async def touch_handler(request: web.Request) -> web.Response:
        data = msgpack.unpackb(await request.read())
        if isinstance(data, dict):
            touch({str(k): int(v) for k, v in data.items()})
        return web.Response(status=204)

    app = web.Application(client_max_size=8 * 2**20)
    app.router.add_get("/fill", fill)
    app.router.add_post("/touch", touch_handler)
    return app


class PeerClient:
    """Talks to the other workers' sockets."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, index: int) -> aiohttp.ClientSession:
        s = self._sessions.get(index)
        if s is None or s.closed:
            conn = aiohttp.UnixConnector(path=str(socket_path(self.run_dir, index)), limit=0)
            s = self._sessions[index] = aiohttp.ClientSession(connector=conn, auto_decompress=False)
        return s

    async def fill(self, index: int, key: str, cond: Conditions) -> MissResult:
        """Ask worker ``index`` for ``key``; raises OSError/ClientError if it cannot be reached."""
        params = {"key": key}
        for name, val in (
            ("range", cond.range),
            ("if_range", cond.if_range),
            ("inm", cond.if_none_match),
            ("ims", cond.if_modified_since),
        ):
            if val is not None:
                params[name] = val
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=None)
        resp = await self._session(index).get("http://peer/fill", params=params, timeout=timeout)
        if resp.status != 200:
            detail = await resp.text()
            resp.release()
            return MissResult(resp.status, "error", detail=detail)
        facts, outcome = _facts_from_json(resp.headers["X-Fill-Head"])
        p = plan(facts, cond)
        return MissResult(p.status, outcome, facts, p, _relay(resp))

    async def touch(self, index: int, counts: dict[str, int]) -> None:
        async with self._session(index).post(
            "http://peer/touch", data=msgpack.packb(counts)
        ) as resp:
            resp.release()

    async def close(self) -> None:
        for s in self._sessions.values():
            await s.close()


class OwnerUnreachable(FillError):
    """The owner's socket did not answer (it is restarting): the caller fills locally."""


class PeerFills:
    """This worker's misses on keys another worker owns, collapsed to one stream per key.

    However many local requests want a cold key, the owner sees one ``/fill`` request from this
    worker for the whole object; local waiters read it through a :class:`Fill` exactly as the
    owner's waiters do, each from its own offset. This halves the owner's fan-out work when
    many players ask at once.
    """

    def __init__(self, client: PeerClient) -> None:
        self.client = client
        self.fills: dict[str, Fill] = {}

    def join(self, owner: int, key: str) -> tuple[Fill, bool]:
        fill = self.fills.get(key)
        if fill is not None:
            return fill, True
        fill = self.fills[key] = Fill(key)
        fill.task = asyncio.create_task(self._relay(owner, fill), name=f"peer fill {key}")
        return fill, False

    async def _relay(self, owner: int, fill: Fill) -> None:
        try:
            res = await self.client.fill(owner, fill.key, Conditions())
            if res.facts is None or res.body is None:
                fill.finish(error_for_status(res.status, res.detail))
                return
            fill.outcome = res.outcome
            fill.set_head(res.facts)
            async for piece in res.body:
                fill.append(bytes(piece))
            fill.finish()
        except asyncio.CancelledError:
            fill.finish(FillAborted("peer fill cancelled"))
            raise
        except FillError as e:
            fill.finish(e)
        except (aiohttp.ClientError, OSError) as e:
            if fill.head.done():
                fill.finish(FillAborted(f"owner stream broke: {e}"))
            else:
                fill.finish(OwnerUnreachable(f"worker {owner}: {e}"))
        except Exception as e:  # e.g. a malformed head from the owner: waiters must not hang
            log.exception("peer relay failed", extra={"key": fill.key, "owner": owner})
            fill.finish(FillAborted(f"peer relay failed: {e}"))
        finally:
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]


async def _relay(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes | memoryview]:
    try:
        async for data in resp.content.iter_any():
            yield data
    except (aiohttp.ClientError, OSError) as e:
        raise FillAborted(f"owner stream broke: {e}") from e
    finally:
        resp.release()

"""The public HTTP/1.1 listener: a thin asyncio protocol on httptools (the hot path).

Why not an aiohttp handler: the hit path is dominated by per-request framework cost, and a hit
here is one LMDB read transaction plus one ``writelines`` of the response head and memoryviews
into the LMDB map (no copy of the body in Python). Measurements are in docs/benchmarks.md.

Zero copy needs care: a memoryview points into LMDB pages that writers may reuse once the read
transaction ends. So the write buffer limit is 0: when the kernel did not take everything at
once, the protocol is paused, the :class:`~appliance.store.ObjectView` stays pinned, and it is
released in :meth:`HttpProtocol.resume_writing` (the socket buffer is empty again) or when the
connection is lost. A client that accepts nothing for ``send_timeout`` is disconnected, which
bounds how long a slow reader can pin pages.

Timeouts (keep-alive idle, send) are not timers: a connection records when it went idle or was
paused, and the worker sweeps all connections a few times a second (:meth:`HttpProtocol.sweep`)
— no timer is armed and cancelled per request or per paused write on the hot path.

Requests on one connection are answered in order (pipelining); a miss is answered by a
:class:`~appliance.missstream.MissStream` the fill pushes bytes to; further requests wait in a
small queue (reading pauses when it is full).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from appliance.missstream import MissStream, gzip_etag
from appliance.respond import (
    NO_CONDITIONS,
    Conditions,
    Plan,
    head_bytes,
    plan,
    preflight_bytes,
    simple_bytes,
)
from appliance.store import ObjectView, StoreBusy
from vodedge.httpspec import PLAYLIST_EXTENSIONS, RangeError, is_playlist, parse_range_spec
from vodedge.paths import PathError, parse_object_path
from vodedge.tokens import TokenVerdict, verify

if TYPE_CHECKING:
    from appliance.worker import Worker

log = logging.getLogger("appliance.http")

_MAX_QUEUE = 16
_PATH_CACHE_MAX = 65536  # validated object paths per worker
_GZIP_CACHE_MAX = 512
_ALLOW = "Allow: GET, HEAD, OPTIONS\r\n"
_RETRY = "Retry-After: 1\r\n"


class Request:
    __slots__ = ("headers", "keep_alive", "method", "start", "url")

    def __init__(
        self, method: bytes, url: bytes, headers: dict[str, str], keep_alive: bool
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.start = time.monotonic()


class _HeadTooLarge(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


_MAX_BODY = 64 * 1024  # GET/HEAD/OPTIONS carry no meaningful body


class GzipCache:
    """Compressed playlists by (key, etag); playlists are small and requested often."""

    def __init__(self, max_entries: int = _GZIP_CACHE_MAX) -> None:
        self._d: dict[tuple[str, str], bytes] = {}
        self._max = max_entries

    def get(self, key: str, etag: str, body: list[memoryview]) -> bytes:
        k = (key, etag)
        v = self._d.get(k)
        if v is None:
            if len(self._d) >= self._max:
                self._d.pop(next(iter(self._d)))
            v = self._d[k] = gzip.compress(b"".join(body), compresslevel=6, mtime=0)
        return v


class HttpProtocol(asyncio.Protocol):
    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.loop = worker.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "-"
        self._url: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._body_size = 0
        self._queue: deque[Request] = deque()
        self.stream: MissStream | None = None
        """The miss being answered; requests behind it wait in ``_queue``."""
        self._pinned: list[ObjectView] = []
        self.write_paused = False
        self.idle_since: float | None = None
        """Loop time the connection started waiting for a request (None while one is in)."""
        self.paused_since: float | None = None
        """Loop time the socket stopped accepting bytes (None while it accepts them)."""
        self._closing = False
        self._reading_paused = False

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but implement it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=0, low=0)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0])
        self.w.protocols.add(self)
        self.idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.w.protocols.discard(self)
        self._closing = True
        self._release_pinned()
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.transport = None

    @property
    def busy(self) -> bool:
        return self.stream is not None or bool(self._pinned) or bool(self._queue)

    def close(self) -> None:
        if self.transport is not None:
            self._closing = True
            self.transport.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_since = self.loop.time()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.paused_since = None
        self._release_pinned()
        if self.stream is not None:
            self.stream.pump()

    def sweep(self, now: float, keepalive_timeout: float, send_timeout: float) -> None:
        """Enforce the timeouts (called by the worker's sweep a few times a second)."""
        transport = self.transport
        if transport is None:
            return
        paused = self.paused_since
        if paused is not None:
            if now - paused > send_timeout:
                self.w.timeout("client_send")
                transport.abort()
            return
        idle = self.idle_since
        if idle is not None and now - idle > keepalive_timeout and not self.busy:
            # A whole request never came (or never the next one): a client trickling a head
            # cannot hold the connection past keepalive_timeout either.
            self.w.timeout("client_idle")
            self._closing = True
            transport.close()

    def _release_pinned(self) -> None:
        self.w.pins -= len(self._pinned)
        for v in self._pinned:
            v.release()
        self._pinned.clear()

    # -- parsing -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        # The idle clock keeps running until a whole request is in (on_message_complete):
        # a client trickling a request head cannot hold the connection past keepalive_timeout.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._fail(431, "request head too large")
            elif isinstance(e.__context__, _BodyTooLarge):
                self._fail(413, "request body not accepted")
            else:
                log.exception("parser callback failed")
                self._fail(500, "internal error")
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrade not supported")
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed request: {e}")

    def _fail(self, status: int, msg: str) -> None:
        if self.transport is None or self._closing:
            return
        self._closing = True
        if self.stream is None:
            self.transport.write(simple_bytes(status, msg.encode() + b"\n", keep_alive=False))
            self.w.counters.request("error", status, 0)
        self.transport.close()

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = {}
        self._head_size = 0
        self._body_size = 0

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > _MAX_BODY:
            raise _BodyTooLarge

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.w.cfg.server.max_header_bytes:
            raise _HeadTooLarge
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.w.cfg.server.max_header_bytes or len(self._headers) > 100:
            raise _HeadTooLarge
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_message_complete(self) -> None:
        self.idle_since = None
        req = Request(
            self.parser.get_method(),
            b"".join(self._url),
            self._headers,
            self.parser.should_keep_alive(),
        )
        if self.stream is not None or self._queue:
            self._queue.append(req)
            if len(self._queue) >= _MAX_QUEUE and self.transport is not None:
                self.transport.pause_reading()
                self._reading_paused = True
            return
        self._handle(req)

    # -- dispatch ------------------------------------------------------------------------

    def _next(self) -> None:
        while self._queue and self.stream is None and not self._closing:
            self._handle(self._queue.popleft())
        if self._reading_paused and len(self._queue) < _MAX_QUEUE and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        if self.stream is None and not self._queue and not self._closing:
            self.idle_since = self.loop.time()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def _finish(self, req: Request, status: int, outcome: str, nbytes: int, path: str) -> None:
        self.idle_since = self.loop.time()
        self.w.counters.request(outcome, status, nbytes)
        if self.w.access_log is not None:
            self.w.access_log.log(req, self.peer, path, status, nbytes, outcome)
        if not req.keep_alive and self.transport is not None:
            self._closing = True
            self.transport.close()

    def _simple(
        self,
        req: Request,
        status: int,
        body: bytes,
        outcome: str = "error",
        ctype: str = "text/plain; charset=utf-8",
        extra: str = "",
        path: str = "-",
    ) -> None:
        self.write(
            simple_bytes(
                status,
                body,
                ctype,
                req.keep_alive,
                extra,
                self.w.cfg.server.cors_allow_origin,
                head_only=req.method == b"HEAD",
            )
        )
        self._finish(req, status, outcome, 0 if req.method == b"HEAD" else len(body), path)

    def _handle(self, req: Request) -> None:
        method = req.method
        raw_path, _, _query = req.url.partition(b"?")
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            self._simple(req, 400, b"non-ascii path\n")
            return
        if method != b"GET" and method != b"HEAD":
            if method == b"OPTIONS":
                self.write(preflight_bytes(self.w.cfg.server.cors_allow_origin, req.keep_alive))
                self._finish(req, 204, "preflight", 0, path)
            else:
                self._simple(req, 405, b"method not allowed\n", extra=_ALLOW, path=path)
            return
        if not path.startswith(("/v/", "/t/")):
            self._control(req, path)
            return
        paths = self.w.path_cache
        obj = paths.get(path)
        if obj is None:
            try:
                obj = parse_object_path(path)
            except PathError as e:
                self._simple(req, 400, f"bad object path: {e}\n".encode(), path=path)
                return
            if len(paths) >= _PATH_CACHE_MAX:
                paths.clear()
            paths[path] = obj
        tokens = self.w.tokens
        if tokens.required:
            verdict = (
                verify(obj.token, obj.video_id, tokens.keys, time.time())
                if obj.token is not None
                else TokenVerdict.MALFORMED
            )
            if verdict is not TokenVerdict.OK:
                self._simple(req, 403, f"token {verdict.value}\n".encode(), path=obj.key)
                return
        self.w.title_requests[obj.video_id] += 1
        h = req.headers
        rng, inm, ims = h.get("range"), h.get("if-none-match"), h.get("if-modified-since")
        cond = (
            NO_CONDITIONS
            if rng is None and inm is None and ims is None
            else Conditions(rng, h.get("if-range"), inm, ims)
        )
        if cond.range is not None:
            try:
                parse_range_spec(cond.range)
            except RangeError as e:
                self._simple(req, 400, f"bad Range: {e}\n".encode(), path=obj.key)
                return
        try:
            view = self.w.store.open_view(obj.key)
        except StoreBusy:
            self.w.store_busy()
            self._simple(req, 503, b"busy, retry\n", extra=_RETRY, path=obj.key)
            return
        if view is not None and self._serve_hit(req, view, cond):
            return
        # A miss (or a checksum failure, whose drop is under way: the refill's commit comes
        # long after it). Joined here, not in a task: the leader's upstream request leaves
        # before the loop runs the other callbacks a burst of players queued up.
        fill, joined = self.w.start_miss(obj.key)
        self.stream = MissStream(self, req, obj.key, cond, fill, joined)
        self.stream.start()

    def _control(self, req: Request, path: str) -> None:
        if path == "/healthz":
            ok, text = self.w.health()
            self._simple(req, 200 if ok else 503, text.encode() + b"\n", "control", path=path)
        elif path == "/metrics":
            body = self.w.render_metrics()
            self._simple(req, 200, body, "control", "text/plain; version=0.0.4", path=path)
        else:
            self._simple(req, 404, b"not found\n", path=path)

    # -- hit -----------------------------------------------------------------------------

    @staticmethod
    def wants_gzip(req: Request, key: str, p: Plan, cond: Conditions) -> bool:
        return p.status == 200 and cond.range is None and is_playlist(key) and _accepts_gzip(req)

    def _serve_hit(self, req: Request, view: ObjectView, cond: Conditions) -> bool:
        """Answer from the store; False (view released) when the object must be refilled."""
        meta = view.meta
        verify = self.w.cfg.storage.verify_checksums
        if cond is NO_CONDITIONS and not (
            view.key.endswith(PLAYLIST_EXTENSIONS) and _accepts_gzip(req)
        ):
            # The common case: a whole-object GET; its head is rendered once per object.
            status = 200
            chunks = [] if meta.length == 0 else view.read_verified(0, meta.nchunks - 1, verify)
            if chunks is None:
                self.w.checksum_failure(view)
                view.release()
                return False
            head = self.w.hit_heads.full(meta, meta.object_id, req.keep_alive, time.time())
            nbytes = meta.length
        else:
            got = self._partial_hit(req, view, cond, verify)
            if got is None:
                return False
            status, head, chunks, nbytes = got
        transport = self.transport
        assert transport is not None
        if req.method == b"HEAD" or not chunks:
            transport.write(head)
            view.release()
            nbytes = 0
        else:
            w = self.w
            if view.mapped and w.pins >= w.pin_budget:
                # Reader slots are running low (many slow clients hold them): copy instead of
                # risking a pin; costs CPU only while so many responses are stuck.
                chunks = [memoryview(bytes(c)) for c in chunks]
                view.mapped = False
            transport.writelines([head, *chunks])
            if view.mapped and transport.get_write_buffer_size():
                self._pinned.append(view)
                w.pins += 1
            else:
                view.release()
        self.w.record_hit(view.key)
        self._finish(req, status, "hit", nbytes, view.key)
        return True

    def _partial_hit(
        self, req: Request, view: ObjectView, cond: Conditions, verify: bool
    ) -> tuple[int, bytes, list[memoryview], int] | None:
        """Range, conditional or gzip'd hits: (status, head, body pieces, body length) or None
        to refill."""
        meta = view.meta
        p = plan(meta, cond)
        chunks: list[memoryview] = []
        if p.status in (200, 206) and p.body_length > 0:
            cs = meta.chunk_size
            first, last = p.start // cs, p.end // cs
            got = view.read_verified(first, last, verify)
            if got is None:
                self.w.checksum_failure(view)
                view.release()
                return None
            chunks = got
            off = p.start - first * cs
            end_excl = p.end - last * cs + 1
            if first == last:
                chunks[0] = got[0][off:end_excl]
            else:
                chunks[0] = got[0][off:]
                chunks[-1] = got[-1][:end_excl]
        encoding = etag = None
        body_length = None
        if self.wants_gzip(req, view.key, p, cond):
            gz = self.w.gzip_cache.get(view.key, meta.etag, chunks)
            chunks = [memoryview(gz)]
            encoding, etag, body_length = "gzip", gzip_etag(meta.etag), len(gz)
        head = head_bytes(
            meta,
            p,
            "vodedge; hit",
            self.w.cfg.server.cors_allow_origin,
            req.keep_alive,
            None,
            encoding,
            etag,
            body_length,
        )
        return p.status, head, chunks, p.body_length if body_length is None else body_length

    # -- miss (driven by the MissStream) -----------------------------------------------------

    def miss_done(self, stream: MissStream) -> None:
        self._end_stream(stream)
        self._finish(stream.req, stream.status, stream.outcome, stream.sent, stream.key)

    def miss_failed(self, stream: MissStream, status: int, body: bytes) -> None:
        """Nothing was sent yet: a plain error answer."""
        self._end_stream(stream)
        self._simple(stream.req, status, body, "error", path=stream.key)

    def miss_aborted(self, stream: MissStream) -> None:
        """The fill broke after the head went out: the client must see a broken body."""
        self._end_stream(stream)
        self.w.counters.request("error", stream.status, stream.sent)
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _end_stream(self, stream: MissStream) -> None:
        if self.stream is stream:
            self.stream = None
            self.loop.call_soon(self._next)


def _accepts_gzip(req: Request) -> bool:
    return "gzip" in req.headers.get("accept-encoding", "")

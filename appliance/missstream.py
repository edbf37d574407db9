"""One client's answer to a miss, pushed from the fill it waits on (no task per waiter).

A burst of players asking for one cold object all wait on one :class:`~appliance.fill.Fill`.
Each of their answers is a :class:`MissStream` listening on it: when the head arrives, and
whenever bytes arrive, the fill calls every listener in one pass and each writes what it can to
its own socket. The first design gave every waiter a task that awaited the head and then iterated
the fill's body: with 500 waiters on 2 cores the wake-ups alone put the median waiter's first
byte 30-40 ms behind the fill's (docs/benchmarks.md, "Single flight").

Fairness: a stream writes at most ``TURN_BYTES`` at a time and queues its next turn behind the
other streams' (``call_soon``), so when 2 MiB arrive at once, all 500 waiters get their first
bytes before any of them gets the rest — the first byte (TTFB) is what makes a player start.

Flow control: the protocol's write buffer limit is 0, so a write the kernel does not take whole
pauses writing; the stream stops and catches up from its own offset when the protocol resumes
(:meth:`MissStream.pump`). The pieces written are the fill's own immutable ``bytes``: a paused
stream pins them, it never copies them.

Playlists for clients that accept gzip are answered once the whole body is in (it is compressed
as one). A waiter on another worker's fill that finds the owner unreachable joins a local fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from appliance.fill import Fill, FillAborted, FillError
from appliance.peer import OwnerUnreachable
from appliance.respond import Conditions, ObjectFacts, Plan, cache_status, head_bytes, plan

if TYPE_CHECKING:
    from appliance.http import HttpProtocol, Request

log = logging.getLogger("appliance.http")

TURN_BYTES = 64 * 1024
"""Bytes a stream writes before the other streams get their turn."""


class MissStream:
    """Streams ``fill`` to one request; the protocol calls :meth:`pump` and :meth:`close`."""

    __slots__ = (
        "_i",
        "_ipos",
        "_turn",
        "cond",
        "end",
        "facts",
        "fill",
        "gzip",
        "head",
        "head_sent",
        "joined",
        "key",
        "outcome",
        "plan",
        "pos",
        "proto",
        "req",
        "sent",
        "status",
    )

    def __init__(
        self,
        proto: HttpProtocol,
        req: Request,
        key: str,
        cond: Conditions,
        fill: Fill,
        joined: bool,
    ) -> None:
        self.proto = proto
        self.req = req
        self.key = key
        self.cond = cond
        self.fill = fill
        self.joined = joined
        self.facts: ObjectFacts | None = None
        self.plan: Plan | None = None
        self.head: bytes | None = None
        """Rendered, waiting to go out with the first body bytes."""
        self.head_sent = False
        self.gzip = False
        self.pos = 0
        self.end = -1
        self.sent = 0
        self.status = 502
        self.outcome = "error"
        self._i = 0  # index into fill.pieces of the piece holding ``pos``
        self._ipos = 0  # offset of that piece in the object
        self._turn: asyncio.Handle | None = None  # the next turn, when queued

    def start(self) -> None:
        self.fill.listen(self)
        self.fill_changed(self.fill)

    def close(self) -> None:
        """The connection went away, or the answer is complete: stop listening."""
        self.fill.unlisten(self)
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None

    def abandon(self) -> None:
        """Our ``fill_changed`` raised (a bug): end the response rather than leave the client
        waiting for bytes that will never come."""
        self.close()
        self.proto.miss_aborted(self)

    # -- driven by the fill --------------------------------------------------------------

    def fill_changed(self, fill: Fill) -> None:
        if fill is not self.fill or self.proto.transport is None:
            return
        if self.facts is None:
            if not fill.head.done():
                return
            exc = fill.head.exception()
            if exc is not None:
                self._fail_before_head(exc)
                return
            self._on_head(fill.head.result())
            if self.facts is None or self.proto.stream is not self:
                return
        self.pump()

    def _on_head(self, facts: ObjectFacts) -> None:
        p = plan(facts, self.cond)
        self.facts, self.plan = facts, p
        self.status = p.status
        self.outcome = "collapsed" if self.joined else self.fill.outcome
        proto = self.proto
        if p.status in (200, 206) and proto.wants_gzip(self.req, self.key, p, self.cond):
            self.gzip = True  # answered whole and compressed once the fill is done
            return
        head = self._render_head(facts, p)
        if p.status not in (200, 206) or self.req.method == b"HEAD" or p.body_length == 0:
            proto.write(head)
            self.head_sent = True
            self._done()
            return
        # The head goes out with the first body bytes (one write for both, and until then a
        # failed fill can still be answered with a plain 502).
        self.head = head
        self.pos, self.end = p.start, p.end

    def _render_head(self, facts: ObjectFacts, p: Plan) -> bytes:
        """The response head; the waiters of one fill share renderings (same second)."""
        now = time.time()
        k = (p.status, p.start, p.end, self.req.keep_alive, self.outcome, int(now))
        head = self.fill.heads.get(k)
        if head is None:
            if len(self.fill.heads) > 64:
                self.fill.heads.clear()
            status = cache_status(self.outcome, self.status)
            cors = self.proto.w.cfg.server.cors_allow_origin
            head = head_bytes(facts, p, status, cors, self.req.keep_alive, now)
            self.fill.heads[k] = head
        return head

    def pump(self) -> None:
        """Write what has arrived from ``pos`` on, until the socket pushes back."""
        if self._turn is None:  # else the queued turn will
            self._write_some()

    def _next_turn(self) -> None:
        self._turn = None
        self._write_some()

    def _write_some(self) -> None:
        proto = self.proto
        transport = proto.transport
        if transport is None or proto.write_paused or self.facts is None:
            return
        fill = self.fill
        if self.gzip:
            if fill.done:
                self._send_gzip()
            return
        pieces = fill.pieces
        budget = TURN_BYTES
        while self.pos <= self.end and self._i < len(pieces):
            if not budget:
                self._turn = proto.loop.call_soon(self._next_turn)
                return
            piece = pieces[self._i]
            start = self._ipos
            if start + len(piece) <= self.pos:  # before the range (a Range request)
                self._i += 1
                self._ipos = start + len(piece)
                continue
            lo = self.pos - start
            hi = min(len(piece), self.end + 1 - start, lo + budget)
            data = piece if lo == 0 and hi == len(piece) else memoryview(piece)[lo:hi]
            if self.head is None:
                transport.write(data)
            else:
                transport.writelines([self.head, data])
                self.head, self.head_sent = None, True
            budget -= hi - lo
            self.sent += hi - lo
            self.pos = start + hi
            if hi == len(piece):
                self._i += 1
                self._ipos = start + hi
            if proto.write_paused:
                return
        if self.pos > self.end:
            self._done()
        elif fill.done:
            exc = fill.error or FillAborted("fill ended short")
            if self.head_sent:
                self._fail_mid_body(exc)
            else:
                self._fail_before_head(exc)

    # -- endings -------------------------------------------------------------------------

    def _send_gzip(self) -> None:
        fill, facts, p = self.fill, self.facts, self.plan
        assert facts is not None and p is not None
        if fill.error is not None or fill.received < facts.length:
            self._fail_before_head(fill.error or FillAborted("fill ended short"))
            return
        proto = self.proto
        gz = proto.w.gzip_cache.get(self.key, facts.etag, [memoryview(b"".join(fill.pieces))])
        proto.write(
            head_bytes(
                facts,
                p,
                cache_status(self.outcome, self.status),
                proto.w.cfg.server.cors_allow_origin,
                self.req.keep_alive,
                None,
                "gzip",
                gzip_etag(facts.etag),
                len(gz),
            )
        )
        self.head_sent = True
        if self.req.method != b"HEAD":
            proto.write(gz)
            self.sent = len(gz)
        self._done()

    def _fail_before_head(self, exc: BaseException) -> None:
        if isinstance(exc, OwnerUnreachable):
            # The owner is restarting: fill here rather than fail the player.
            self.fill.unlisten(self)
            self.fill, self.joined = self.proto.w.fill_locally(self.key, exc)
            self.start()
            return
        status = exc.status if isinstance(exc, FillError) else 502
        # Players get a short, generic text; what went wrong (and with which upstream) is for
        # the log, not for anyone who can send a request.
        log.warning("miss failed", extra={"key": self.key, "status": status, "error": str(exc)})
        self.close()
        self.proto.miss_failed(self, status, _PLAYER_ERRORS.get(status, b"upstream error\n"))

    def _fail_mid_body(self, exc: FillError) -> None:
        # Headers are out: abort, so the client sees a broken body, never bad bytes.
        log.warning("miss failed mid-body", extra={"key": self.key, "error": str(exc)})
        self.close()
        self.proto.miss_aborted(self)

    def _done(self) -> None:
        self.close()
        self.proto.miss_done(self)


_PLAYER_ERRORS = {404: b"not found\n", 504: b"upstream timeout\n"}


def gzip_etag(etag: str) -> str:
    """The gzip'd representation's ETag: distinct from the identity one, still strong."""
    return etag[:-1] + '-gz"'

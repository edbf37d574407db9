"""The miss path inside the worker that owns a key: single flight and upstream fetch.

Errors::

    FillError (status 502)           nothing usable came from any upstream
     ├── UpstreamNotFound (404)      an upstream said 404 (remembered for ``negative_ttl``)
     ├── UpstreamTimeout (504)       connect / first-byte / idle timeout on the last upstream
     └── FillAborted (502)           the body broke after the head was known (waiters abort)

Single flight: :meth:`Filler.join` registers the :class:`Fill` under its key *before* the first
await and starts one task (held by the Fill) that fetches the whole object from the first
upstream that answers. Every waiter reads the same in-memory pieces from its own offset as they
arrive (``Fill.body``), so a waiter for a Range starts as soon as its first byte is in; waiters
that hang up never cancel the fill. Only a complete, length-checked 200 is offered to the store;
the key stays registered until the store commit has finished, so a request arriving meanwhile
joins the finished fill instead of starting a second fetch. Requests that reach another worker
are routed to the owner (``appliance.peer``), which makes this single flight fleet-of-workers
wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import xxhash

from appliance import metrics as m
from appliance.config import FillConfig
from appliance.ratelimit import SharedRate
from appliance.respond import ObjectFacts
from vodedge.httpspec import IMMUTABLE_CACHE_CONTROL, content_type_for, parse_http_date

log = logging.getLogger("appliance.fill")


class FillError(Exception):
    status = 502


class UpstreamNotFound(FillError):
    status = 404


class UpstreamTimeout(FillError):
    status = 504


class FillAborted(FillError):
    pass


def error_for_status(status: int, detail: str) -> FillError:
    """The fill error a status relayed from another worker stands for."""
    if status == 404:
        return UpstreamNotFound(detail)
    if status == 504:
        return UpstreamTimeout(detail)
    return FillError(detail)


@dataclass(frozen=True, slots=True)
class CompletedBody:
    """What a finished fill hands to the store callback."""

    key: str
    facts: ObjectFacts
    body: bytes
    force_admit: bool = False
    """A prefill asked for it: placement already decided, so admission must not refuse it."""
    still_wanted: Callable[[], bool] = lambda: True
    """False once the key was purged while it was being committed: the commit is undone."""


@dataclass(frozen=True, slots=True)
class PrefillTag:
    """A prefill job's request to fill a key: whose it is and the job's shared byte rate."""

    job: str
    limiter: SharedRate | None


StoreCallback = Callable[[CompletedBody], Awaitable[None]]


class FillListener(Protocol):
    def fill_changed(self, fill: Fill) -> None:
        """The head arrived, bytes arrived, or the fill ended; called synchronously."""

    def abandon(self) -> None:
        """``fill_changed`` raised: end this listener's response (it hears nothing more)."""


class Fill:
    """One object being fetched; any number of waiters read it while it arrives."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.head: asyncio.Future[ObjectFacts] = asyncio.get_running_loop().create_future()
        self.pieces: list[bytes] = []
        self.received = 0
        self.done = False
        self.error: FillError | None = None
        self.task: asyncio.Task[None] | None = None
        self.outcome = "miss"  # how the first waiter's request was answered upstream of us
        self.players = 0
        """Player requests that joined; a fill with none is a background prefill."""
        self.prefill_jobs: set[str] = set()
        self.force_admit = False
        self.limiter: SharedRate | None = None
        """The prefill job's rate; dropped as soon as a player joins (players never wait)."""
        self.player_joined = asyncio.Event()
        """Set when a player joins: cuts short a rate-limit pause already under way."""
        self.store = True
        """False once purged while in flight: waiters are served, nothing is committed."""
        self._changed = asyncio.Event()
        self._listeners: dict[FillListener, None] = {}  # ordered, O(1) removal
        self.heads: dict[tuple[object, ...], bytes] = {}
        """Response heads rendered for this fill's waiters (appliance.missstream)."""

    def listen(self, listener: FillListener) -> None:
        """Call ``listener.fill_changed`` on every change (a push alternative to :meth:`body`)."""
        self._listeners[listener] = None

    def unlisten(self, listener: FillListener) -> None:
        self._listeners.pop(listener, None)

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()
        for listener in tuple(self._listeners):
            try:
                listener.fill_changed(self)
            except Exception:  # one broken client must not break the fill for the others
                log.exception("fill listener failed", extra={"key": self.key})
                self.unlisten(listener)
                try:
                    listener.abandon()  # its client must not wait for bytes that never come
                except Exception:
                    log.exception("abandoning a fill listener failed", extra={"key": self.key})

    def set_head(self, facts: ObjectFacts) -> None:
        self.head.set_result(facts)
        self._notify()

    def append(self, data: bytes) -> None:
        self.pieces.append(data)
        self.received += len(data)
        self._notify()

    def finish(self, error: FillError | None = None) -> None:
        """End the fill (successfully without ``error``); the first call decides, later ones
        (a cancellation reaching a fill that already ended, say) change nothing."""
        if self.done:
            return
        self.done = True
        self.error = error
        if not self.head.done():
            self.head.set_exception(error or FillError("fill ended without a head"))
            self.head.exception()  # mark retrieved: waiters may all have gone
        self._notify()

    async def wait_head(self) -> ObjectFacts:
        return await asyncio.shield(self.head)

    async def body(self, start: int, end: int) -> AsyncIterator[memoryview]:
        """Yield the bytes ``start..end`` (inclusive) as they arrive."""
        if end < start:
            return
        pos = 0
        i = 0
        while True:
            pieces = self.pieces
            while i < len(pieces):
                p = pieces[i]
                p_start = pos
                pos += len(p)
                i += 1
                if pos <= start:
                    continue
                lo = max(0, start - p_start)
                hi = min(len(p), end + 1 - p_start)
                yield memoryview(p)[lo:hi]
                if pos > end:
                    return
            if self.done:
                if self.error is not None:
                    raise self.error
                if pos <= end:
                    raise FillAborted("fill ended short")
                return
            ev = self._changed
            await ev.wait()


class NegativeCache:
    """Keys upstream answered 404 for, remembered for ``ttl`` seconds (bounded)."""

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._until: dict[str, float] = {}

    def add(self, key: str, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._until) >= self.max_entries:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self.max_entries:
                self._until.clear()
        self._until[key] = now + self.ttl

    def __contains__(self, key: str) -> bool:
        t = self._until.get(key)
        if t is None:
            return False
        if t <= time.monotonic():
            del self._until[key]
            return False
        return True

    def discard(self, key: str) -> None:
        self._until.pop(key, None)


def _strong_etag(value: str | None) -> str | None:
    if value and value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return value
    return None


class Filler:
    """Single-flight fills for the keys this worker owns."""

    def __init__(
        self,
        cfg: FillConfig,
        session: aiohttp.ClientSession,
        on_complete: StoreCallback,
        via: str = "vodedge",
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.on_complete = on_complete
        self.via = via
        self.fills: dict[str, Fill] = {}
        self.negative = NegativeCache(cfg.negative_ttl)

    def join(self, key: str, prefill: PrefillTag | None = None) -> tuple[Fill, bool]:
        """The fill for ``key``, starting one if none runs; second value: collapsed.

        ``prefill`` marks a prefill job's request (rate-limited, admitted without the
        admission test); without it the caller is a player.
        """
        fill = self.fills.get(key)
        if fill is not None:
            _enlist(fill, prefill)
            return fill, True
        fill = Fill(key)
        self.fills[key] = fill
        if key in self.negative:
            fill.finish(UpstreamNotFound("cached 404"))
            del self.fills[key]
            return fill, False
        if prefill is not None:
            fill.limiter = prefill.limiter
        _enlist(fill, prefill)
        fill.task = asyncio.create_task(self._run(fill), name=f"fill {key}")
        return fill, False

    @property
    def player_fills(self) -> int:
        """Fills in flight that a player is waiting for."""
        return sum(1 for f in self.fills.values() if f.players)

    def cancel_prefill(self, job: str) -> int:
        """Stop the fills only ``job`` wants (no player, no other job) that are still fetching
        (one that has ended is committing: cancelling it would lose the object, not the
        bytes); returns how many."""
        n = 0
        for f in list(self.fills.values()):
            if job not in f.prefill_jobs:
                continue
            f.prefill_jobs.discard(job)
            if not f.prefill_jobs and not f.players and not f.done and f.task is not None:
                f.task.cancel()
                n += 1
        return n

    def forget(self, keys: set[str], prefixes: tuple[str, ...]) -> None:
        """A purge: fills in flight for these keys still serve their waiters but store nothing."""
        for key, f in self.fills.items():
            if key in keys or key.startswith(prefixes):
                f.store = False

    async def _run(self, fill: Fill) -> None:
        m.FILLS_IN_FLIGHT.inc()
        try:
            completed = await self._fetch(fill)
            if completed is not None:
                if fill.store:
                    await self.on_complete(completed)
                else:  # purged in flight, or a body whose end could not be told from a cut
                    m.FILLS_STORED.labels("not_stored").inc()
        except asyncio.CancelledError:
            fill.finish(FillAborted("fill cancelled"))
            raise
        except Exception as e:  # map anything unexpected to an aborted fill for the waiters
            log.exception("fill failed", extra={"key": fill.key})
            fill.finish(FillAborted(f"internal error: {e}"))
        finally:
            m.FILLS_IN_FLIGHT.dec()
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]

    async def _fetch(self, fill: Fill) -> CompletedBody | None:
        cfg = self.cfg
        last_error: FillError = FillError("no upstream configured")
        # No sock_read: aiohttp 3.14 can leave its read timer armed on a connection back in the
        # keep-alive pool (after a body read that paused the transport); it fires while the
        # connection idles and the next fill on it fails at once with a read timeout (seen as
        # 504s under load in bench/single_flight.py). The idle timeout is ours, per read.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout)
        for base in cfg.upstreams:
            url = base + fill.key
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(cfg.first_byte_timeout):
                    resp = await self.session.get(
                        url,
                        headers={"Accept-Encoding": "identity", "Via": f"1.1 {self.via}"},
                        timeout=timeout,
                        allow_redirects=False,
                    )
            except aiohttp.ConnectionTimeoutError:  # before TimeoutError: it is one
                m.TIMEOUTS.labels("upstream_connect").inc()
                m.UPSTREAM_REQUESTS.labels(base, "timeout_connect").inc()
                last_error = UpstreamTimeout(f"{base}: connect timeout")
                continue
            except TimeoutError:
                m.TIMEOUTS.labels("upstream_first_byte").inc()
                m.UPSTREAM_REQUESTS.labels(base, "timeout_first_byte").inc()
                last_error = UpstreamTimeout(
                    f"{base}: no response head in {cfg.first_byte_timeout}s"
                )
                continue
            except (aiohttp.ClientError, OSError) as e:
                m.UPSTREAM_REQUESTS.labels(base, "connect_error").inc()
                last_error = FillError(f"{base}: {e.__class__.__name__}: {e}")
                continue
            m.UPSTREAM_TTFB.observe(time.monotonic() - t0)
            try:
                if resp.status >= 500:
                    m.UPSTREAM_REQUESTS.labels(base, "http_5xx").inc()
                    last_error = FillError(f"{base}: upstream status {resp.status}")
                    continue
                if resp.status in (404, 410):
                    m.UPSTREAM_REQUESTS.labels(base, "not_found").inc()
                    self.negative.add(fill.key, time.monotonic())
                    fill.finish(UpstreamNotFound(f"{base}: {resp.status}"))
                    return None
                if resp.status != 200:
                    m.UPSTREAM_REQUESTS.labels(base, "http_other").inc()
                    error = FillError(f"{base}: unexpected upstream status {resp.status}")
                    if base == cfg.parent:
                        # A parent refusing (429 overloaded, 403, a redirect) is no verdict on
                        # the object: the origins are asked. An origin's answer is final.
                        last_error = error
                        continue
                    fill.finish(error)
                    return None
                return await self._read_body(fill, base, resp, t0)
            finally:
                resp.release()
        fill.finish(last_error)
        return None

    async def _read_body(
        self, fill: Fill, base: str, resp: aiohttp.ClientResponse, t0: float
    ) -> CompletedBody | None:
        cfg = self.cfg
        length = resp.content_length
        if length is not None and length > cfg.max_object_size:
            m.UPSTREAM_REQUESTS.labels(base, "too_large").inc()
            fill.finish(FillError(f"object of {length} bytes exceeds fill.max_object_size"))
            return None
        h = resp.headers
        lm = parse_http_date(h.get("Last-Modified", "")) if h.get("Last-Modified") else None
        etag = _strong_etag(h.get("ETag"))
        ctype = h.get("Content-Type") or content_type_for(fill.key)
        cache_control = h.get("Cache-Control") or IMMUTABLE_CACHE_CONTROL
        stored_at = time.time()
        last_modified = float(lm) if lm is not None else float(int(stored_at))

        def facts_for(n: int, tag: str) -> ObjectFacts:
            return ObjectFacts(n, ctype, tag, last_modified, cache_control, stored_at)

        if length is None and "chunked" not in h.get("Transfer-Encoding", "").lower():
            # Ended by the connection closing: a cut connection looks the same as the end,
            # so such a body is served to its waiters but never stored.
            log.warning(
                "upstream body without length or chunking: not stored",
                extra={"url": base + fill.key},
            )
            fill.store = False
        early = length is not None and etag is not None
        if early:
            assert length is not None and etag is not None
            fill.set_head(facts_for(length, etag))
        body_deadline = time.monotonic() + cfg.body_timeout
        try:
            while True:
                async with asyncio.timeout(cfg.idle_timeout):
                    data = await resp.content.readany()
                if time.monotonic() > body_deadline:
                    raise _BodyTooSlow
                if not data:
                    break
                fill.append(data)
                m.FILL_BYTES.inc(len(data))
                if fill.received > cfg.max_object_size:
                    raise FillAborted("object exceeds fill.max_object_size")
                limiter = fill.limiter
                if limiter is not None:
                    delay = limiter.reserve(len(data))
                    if delay:
                        # A pause of the job's shared rate can be seconds; a player joining
                        # ends it at once (the rate no longer applies to this fill).
                        paused = time.monotonic()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await fill.player_joined.wait()
                        body_deadline += time.monotonic() - paused  # our pause, not theirs
        except _BodyTooSlow:
            m.TIMEOUTS.labels("upstream_body").inc()
            m.UPSTREAM_REQUESTS.labels(base, "timeout_body").inc()
            m.UPSTREAM_SECONDS.labels("timeout").observe(time.monotonic() - t0)
            fill.finish(UpstreamTimeout(f"{base}: body not complete in {cfg.body_timeout}s"))
            return None
        except TimeoutError:  # before OSError: it is one
            m.TIMEOUTS.labels("upstream_idle").inc()
            m.UPSTREAM_REQUESTS.labels(base, "timeout_idle").inc()
            m.UPSTREAM_SECONDS.labels("timeout").observe(time.monotonic() - t0)
            fill.finish(UpstreamTimeout(f"{base}: idle for {cfg.idle_timeout}s mid-body"))
            return None
        except (aiohttp.ClientError, OSError, FillAborted) as e:
            m.UPSTREAM_REQUESTS.labels(base, "truncated").inc()
            m.UPSTREAM_SECONDS.labels("error").observe(time.monotonic() - t0)
            fill.finish(e if isinstance(e, FillAborted) else FillAborted(f"{base}: {e}"))
            return None
        if length is not None and fill.received != length:
            m.UPSTREAM_REQUESTS.labels(base, "wrong_length").inc()
            fill.finish(FillAborted(f"{base}: got {fill.received} of {length} bytes"))
            return None
        body = b"".join(fill.pieces)
        if not early:
            tag = etag or f'"{xxhash.xxh3_128_hexdigest(body)}"'
            fill.set_head(facts_for(len(body), tag))
        m.UPSTREAM_REQUESTS.labels(base, "ok").inc()
        m.UPSTREAM_SECONDS.labels("ok").observe(time.monotonic() - t0)
        fill.finish()
        return CompletedBody(
            fill.key, fill.head.result(), body, fill.force_admit, lambda: fill.store
        )


class _BodyTooSlow(Exception):
    """The whole body took longer than ``fill.body_timeout``."""


def _enlist(fill: Fill, prefill: PrefillTag | None) -> None:
    if prefill is None:
        fill.players += 1
        fill.limiter = None
        fill.player_joined.set()
    else:
        fill.prefill_jobs.add(prefill.job)
        fill.force_admit = True

"""One worker process: serves the public listeners it inherited, owns a shard of keys.

Lifecycle: ``main`` -> :meth:`Worker.start` (open disks, rebuild policy state, start the peer
socket, the listeners and the background tasks) -> serve until SIGTERM/SIGINT ->
:meth:`Worker.shutdown` (stop accepting, let in-flight responses finish within
``shutdown_grace``, cancel the rest, flush policy state, close the disks).

Started by the supervisor as ``python -m appliance.worker --config … --index … --workers …
--fds …``; never daemonizes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from appliance import metrics as m
from appliance.accesslog import AccessLog
from appliance.cache import CacheManager, owner_of
from appliance.config import ApplianceConfig, load_snapshot
from appliance.control_api import add_control_routes
from appliance.fill import Fill, Filler, FillError, PrefillTag
from appliance.http import GzipCache, HttpProtocol
from appliance.listen import BACKLOG
from appliance.peer import (
    MissResult,
    OwnerUnreachable,
    PeerClient,
    PeerFills,
    make_peer_app,
    socket_path,
)
from appliance.ratelimit import SharedRate
from appliance.respond import Conditions, HitHeads, plan
from appliance.store import MAX_READERS, ObjectView, Store, StoreBusy
from vodedge.logs import setup_logging
from vodedge.paths import ObjectPath
from vodedge.tasks import TaskSet

log = logging.getLogger("appliance.worker")

TITLE_COUNTS_MAX = 100_000
"""Distinct video ids counted between two collections by the supervisor, at most."""


class Worker:
    def __init__(
        self,
        cfg: ApplianceConfig,
        index: int,
        nworkers: int,
        listen_fds: list[int],
        root_pid: int,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.nworkers = nworkers
        self.listen_fds = listen_fds
        self.root_pid = root_pid
        self.shutdown_grace = shutdown_grace
        self.loop = asyncio.get_running_loop()
        self.tokens = cfg.tokens
        self.store = Store(cfg.storage, ram_bytes=cfg.storage.ram_cache_size // max(1, nworkers))
        self.pins = 0
        """Hit responses holding an LMDB read transaction until their socket drains."""
        self.pin_budget = max(16, MAX_READERS // max(1, nworkers) - 64)
        """Past this many pins, hits copy their bytes instead (slots stay for reads)."""
        self.cache = CacheManager(self.store, index, nworkers, cfg.storage.chunk_size)
        self.counters = m.HotCounters()
        self.access_log = AccessLog(index) if cfg.server.access_log else None
        self.gzip_cache = GzipCache()
        self.hit_heads = HitHeads(cfg.server.cors_allow_origin)
        self.path_cache: dict[str, ObjectPath] = {}
        self.protocols: set[HttpProtocol] = set()
        self.draining = draining_flag(cfg.state_dir).exists()
        self.title_requests: defaultdict[str, int] = defaultdict(int)
        """Object requests per video_id since the supervisor last collected them."""
        self._limiters: dict[str, SharedRate] = {}
        self._touches: defaultdict[str, int] = defaultdict(int)
        """Hits per key since the last flush; split by owning worker at flush time."""
        self._servers: list[asyncio.Server] = []
        self.tasks = TaskSet(log)
        self._peer_runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.filler: Filler | None = None
        self.peers = PeerClient(cfg.run_dir)
        self.peer_fills = PeerFills(self.peers)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        restored = await asyncio.to_thread(self.cache.restore_blocking)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self.filler = Filler(self.cfg.fill, self._session, self.cache.store_completed)
        peer_app = make_peer_app(self.local_miss, self._touch_from_peer)
        add_control_routes(peer_app, self)
        self._peer_runner = web.AppRunner(peer_app, access_log=None)
        await self._peer_runner.setup()
        sock_path = socket_path(self.cfg.run_dir, self.index)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        # A burst of cold keys opens many peer connections at once: the default backlog (128)
        # overflowed with 4 workers and sent misses down the "owner unreachable" path.
        await web.UnixSite(self._peer_runner, str(sock_path), backlog=4096).start()
        for fd in self.listen_fds:
            # Bound by the supervisor, not listening yet: create_server's listen() puts it in
            # the address's SO_REUSEPORT group now that this worker can serve it.
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            server = await self.loop.create_server(
                lambda: HttpProtocol(self), sock=sock, backlog=BACKLOG
            )
            self._servers.append(server)
        for coro in (
            self.cache.evict_loop(),
            self.cache.stats_loop(),
            self._flush_loop(),
            self._sweep_loop(),
        ):
            self.tasks.spawn(coro)
        for d in self.store.disks:
            m.DISK_CAPACITY.labels(str(d.path)).set(d.cfg.size)
        log.info(
            "worker ready",
            extra={"worker": self.index, "pid": os.getpid(), "restored_objects": restored},
        )

    async def shutdown(self) -> None:
        for s in self._servers:
            s.close()
        deadline = time.monotonic() + self.shutdown_grace
        # Polling is deliberate: busy-ness changes on many paths and 50 ms is fine at shutdown.
        while any(p.busy for p in self.protocols) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for p in list(self.protocols):
            p.close()
        await self.tasks.cancel_all()
        own = self._take_touches().get(self.index)
        if own:
            self._touch_from_peer(own)
        await self.cache.flush_stats()
        self._flush_metrics()
        if self._peer_runner is not None:
            await self._peer_runner.cleanup()
        await self.peers.close()
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(self.store.close)

    # -- used by the HTTP protocol -------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if not any(d.healthy for d in self.store.disks):
            return False, "failed: no disk in service"
        return True, "ok"

    def render_metrics(self) -> bytes:
        self._flush_metrics()
        return m.render(self.root_pid)

    def timeout(self, kind: str) -> None:
        m.TIMEOUTS.labels(kind).inc()

    def record_hit(self, key: str) -> None:
        """Count a hit; the owner's policy gets the counts in a batch once a second."""
        self._touches[key] += 1

    def _take_touches(self) -> dict[int, dict[str, int]]:
        """The hits counted since the last call, by owning worker."""
        touches, self._touches = self._touches, defaultdict(int)
        by_owner: dict[int, dict[str, int]] = {}
        n = self.nworkers
        for key, count in touches.items():
            by_owner.setdefault(owner_of(key, n), {})[key] = count
        return by_owner

    def store_busy(self) -> None:
        """No LMDB reader slot was free for a hit (answered 503 + Retry-After)."""
        m.STORE_ERRORS.labels("readers_full").inc()
        log.warning("no free LMDB reader slot", extra={"pins": self.pins})

    def checksum_failure(self, view: ObjectView) -> None:
        m.CHECKSUM_FAILURES.labels(str(view.disk.path)).inc()
        log.error("checksum mismatch; dropping object", extra={"key": view.key})
        self.tasks.spawn(self.cache.drop(view.disk, view.key, view.meta.object_id))

    def start_miss(self, key: str) -> tuple[Fill, bool]:
        """Join (or start) the fill for a key the caller just found missing from the store.

        Synchronous on purpose: called from the request callback, so the leader's upstream (or
        owner) request is under way before the event loop runs the hundreds of other callbacks
        a burst of players queues up — every loop iteration it waits costs it milliseconds.
        """
        owner = owner_of(key, self.nworkers)
        if owner == self.index:
            assert self.filler is not None
            return self.filler.join(key)
        return self.peer_fills.join(owner, key)

    def fill_locally(self, key: str, why: OwnerUnreachable) -> tuple[Fill, bool]:
        """The owner of ``key`` cannot be reached (it is restarting): fill here instead."""
        assert self.filler is not None
        fill, joined = self.filler.join(key)
        if not joined:  # once per fill, not once per waiter of the relay that failed
            log.warning("owner unreachable; filling locally", extra={"key": key, "error": str(why)})
            m.UPSTREAM_REQUESTS.labels("peer", "owner_unreachable").inc()
        return fill, joined

    async def local_miss(self, key: str, cond: Conditions) -> MissResult:
        assert self.filler is not None
        if key not in self.filler.fills:
            try:
                view = self.store.open_view(key)
            except StoreBusy:
                view = None  # cannot look: fill (the object may be refetched once, never lost)
            if view is not None:
                res = self._from_store(view, cond)
                if res is not None:
                    return res
                m.CHECKSUM_FAILURES.labels(str(view.disk.path)).inc()
                await self.cache.drop(view.disk, key, view.meta.object_id)
        fill, joined = self.filler.join(key)
        return await self._from_fill(fill, joined, cond)

    @staticmethod
    async def _from_fill(fill: Fill, joined: bool, cond: Conditions) -> MissResult:
        try:
            facts = await fill.wait_head()
        except FillError as e:
            return MissResult(e.status, "error", detail=str(e))
        p = plan(facts, cond)
        body = fill.body(p.start, p.end) if p.status in (200, 206) else None
        return MissResult(p.status, "collapsed" if joined else fill.outcome, facts, p, body)

    def _from_store(self, view: ObjectView, cond: Conditions) -> MissResult | None:
        """A miss that found the object stored meanwhile (a race with the commit)."""
        meta = view.meta
        facts = meta
        p = plan(facts, cond)
        chunks: list[bytes] = []
        if p.status in (200, 206) and p.body_length > 0:
            cs = meta.chunk_size
            got = view.read_verified(p.start // cs, p.end // cs, True)
            if got is None:
                view.release()
                return None
            data = b"".join(got)
            off = p.start - (p.start // cs) * cs
            chunks = [data[off : off + p.body_length]]
        view.release()
        self.cache.hit(view.key)
        return MissResult(p.status, "hit", facts, p, _iter(chunks))

    def _touch_from_peer(self, counts: dict[str, int]) -> None:
        for key, n in counts.items():
            self.cache.hit(key, n)

    # -- control (asked by the supervisor over the peer socket) -----------------------------

    def stats(self) -> dict[str, Any]:
        assert self.filler is not None
        disks = []
        for d in self.store.disks:
            pol = self.cache.policies[d.index]
            disks.append(
                {
                    "index": d.index,
                    "path": str(d.path),
                    "healthy": d.healthy,
                    "error": d.failed,
                    "capacity_bytes": d.cfg.size,
                    "objects": len(pol),
                    "bytes": pol.used,
                }
            )
        return {
            "index": self.index,
            "pid": os.getpid(),
            "draining": self.draining,
            "connections": len(self.protocols),
            "fills": {"player": self.filler.player_fills, "total": len(self.filler.fills)},
            "config_digest": self.cfg.digest,
            "disks": disks,
        }

    def titles(self, reset_requests: bool) -> dict[str, Any]:
        requests = self.title_requests
        if reset_requests:
            self.title_requests = defaultdict(int)
        return {"held": self.cache.titles.snapshot(), "requests": dict(requests)}

    async def purge(self, keys: list[str], prefixes: list[str]) -> tuple[int, int]:
        assert self.filler is not None
        self.filler.forget(set(keys), tuple(prefixes))
        for k in keys:
            self.filler.negative.discard(k)
        return await self.cache.purge(keys, prefixes)

    def set_draining(self, draining: bool) -> None:
        if draining != self.draining:
            log.info("drain state changed", extra={"worker": self.index, "draining": draining})
        self.draining = draining

    def reload(self, cfg: ApplianceConfig) -> None:
        """Take the live parts of a new config (the supervisor has validated and merged it)."""
        assert self.filler is not None
        self.cfg = cfg
        self.tokens = cfg.tokens
        self.filler.cfg = cfg.fill
        self.filler.negative.ttl = cfg.fill.negative_ttl
        logging.getLogger().setLevel(cfg.log_level.upper())

    async def prefill_one(self, key: str, job: str, rate_file: str) -> dict[str, Any]:
        """Fill ``key`` for prefill job ``job`` through the single-flight fill (joining a
        player's fill if one runs), at the job's shared rate; players' fills go first."""
        assert self.filler is not None
        view = self.store.open_view(key)
        if view is not None:
            view.release()
            return {"result": "skipped", "bytes": 0}
        # Players go first: wait while this worker is busy filling for them. Polling is fine
        # for a background job and keeps the player path free of any prefill bookkeeping.
        while self.filler.player_fills >= self.cfg.prefill.pause_at_player_fills:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        try:
            limiter = self._limiter(rate_file)
        except FileNotFoundError:
            return {"result": "cancelled", "bytes": 0}
        fill, _joined = self.filler.join(key, PrefillTag(job, limiter))
        if fill.task is not None:
            # wait() never cancels the fill if this request is cancelled (players may need it)
            await asyncio.wait([fill.task])
        if fill.error is not None:
            return {"result": "failed", "bytes": fill.received, "error": str(fill.error)}
        view = self.store.open_view(key)
        if view is None:
            return {"result": "failed", "bytes": fill.received, "error": "not stored"}
        view.release()
        return {"result": "stored", "bytes": fill.received}

    def cancel_prefill(self, job: str) -> int:
        assert self.filler is not None
        for path in [p for p in self._limiters if Path(p).stem == job]:
            self._limiters.pop(path).close()
        return self.filler.cancel_prefill(job)

    def _limiter(self, rate_file: str) -> SharedRate:
        lim = self._limiters.get(rate_file)
        if lim is None:
            if len(self._limiters) >= 64:
                oldest = next(iter(self._limiters))
                self._limiters.pop(oldest).close()
            lim = self._limiters[rate_file] = SharedRate(Path(rate_file))
        return lim

    # -- periodic ------------------------------------------------------------------------

    def _flush_metrics(self) -> None:
        self.counters.flush()
        m.CONNECTIONS.set(len(self.protocols))
        ram = self.store.ram
        if ram.enabled:
            hits, misses = ram.take_counts()
            m.RAM_CACHE_READS.labels("ram").inc(hits)
            m.RAM_CACHE_READS.labels("disk").inc(misses)
            m.RAM_CACHE_BYTES.set(ram.used)
            m.RAM_CACHE_CAPACITY.set(ram.capacity)
        for i, used in self.cache.object_bytes().items():
            d = self.store.disks[i]
            m.DISK_OBJECT_BYTES.labels(str(d.path)).set(used)
            m.DISK_OBJECTS.labels(str(d.path)).set(len(self.cache.policies[i]))
            m.DISK_UP.labels(str(d.path)).set(1 if d.healthy else 0)
            if d.healthy:
                with contextlib.suppress(Exception):
                    m.DISK_FILE_BYTES.labels(str(d.path)).set(d.used_bytes())

    async def _sweep_loop(self) -> None:
        """Client connection timeouts: a few passes a second instead of a timer per request."""
        while True:
            srv = self.cfg.server
            keepalive, send = srv.keepalive_timeout, srv.send_timeout
            await asyncio.sleep(min(0.5, max(0.025, min(keepalive, send) / 4)))
            now = self.loop.time()
            for p in list(self.protocols):
                p.sweep(now, keepalive, send)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._flush_metrics()
            if self.access_log is not None:
                self.access_log.flush()
            if len(self.title_requests) > TITLE_COUNTS_MAX:
                # Counted per requested video id before any lookup, and only taken by the
                # supervisor when a control plane is configured: requests for made-up ids
                # must not grow it without bound.
                log.warning(
                    "title request counts dropped", extra={"titles": len(self.title_requests)}
                )
                self.title_requests = defaultdict(int)
            for owner, counts in self._take_touches().items():
                if owner == self.index:
                    self._touch_from_peer(counts)
                    continue
                try:
                    await self.peers.touch(owner, counts)
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, OSError):
                    pass  # owner restarting: hit counts are advisory


async def _iter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


def draining_flag(state_dir: Path) -> Path:
    """Exists while the appliance is drained (so a restart stays drained)."""
    return state_dir / "draining"


async def _amain(args: argparse.Namespace) -> int:
    cfg = load_snapshot(Path(args.config))
    setup_logging(f"appliance-w{args.index}", cfg.log_level)
    fds = [int(x) for x in args.fds.split(",") if x]
    worker = Worker(cfg, args.index, args.workers, fds, args.root_pid, args.shutdown_grace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    if args.ready_file:
        await asyncio.to_thread(Path(args.ready_file).touch)
    await stop.wait()
    log.info("worker stopping", extra={"worker": args.index})
    await worker.shutdown()
    if worker.access_log is not None:
        worker.access_log.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance.worker")
    ap.add_argument("--config", required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--fds", required=True)
    ap.add_argument("--root-pid", type=int, default=os.getppid())
    ap.add_argument("--shutdown-grace", type=float, default=30.0)
    ap.add_argument("--ready-file", default="")
    args = ap.parse_args(argv)
    return uvloop.run(_amain(args))


if __name__ == "__main__":
    raise SystemExit(main())

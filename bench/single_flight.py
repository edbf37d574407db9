"""Single flight: many concurrent cold requests, one upstream fetch, and what the waiters wait.

Usage (from the repo root)::

    .venv/bin/python bench/single_flight.py            # 5 fresh keys per case
    .venv/bin/python bench/single_flight.py --quick    # 1 key per case
    .venv/bin/python bench/single_flight.py --workers 2,4 --concurrency 500 --delay-ms 300

The origin (the appliance test upstream) waits ``--delay-ms`` before answering every request
(its ``delay`` fault). For each appliance worker count and each request kind (a full GET, and a
64 KiB Range in the middle of the object), and for each of ``--keys`` fresh object keys:

1. the origin's own time to first byte, measured directly (``--direct`` sequential requests
   for a twin key with the same bytes, the same headers and the same delay), then
2. ``--concurrency`` requests for the cold key at once through the appliance, one new
   connection each, as players arriving together; each is timed from its own start (before
   connecting) to the first body byte, and its status and body length are checked, then
3. the origin's request count for the key (``GET /_count?path=``): the target is exactly 1,
4. the same burst once more, now that the key is stored (all hits): how long 500 concurrent
   answers of this size take on this machine anyway, single flight or not.

"leader head" is the response head time of the burst's first request, the one that starts the
fill. With ``--lead-ms 20`` that request goes 20 ms before the other ones; comparing its head
time with and without the lead shows how late the upstream request leaves under the crowd.

Varnish and nginx (``--refs``; request coalescing is Varnish's default, nginx has
``proxy_cache_lock on``; configs as in ``bench/hit_throughput.py``) go through the same bursts
with ``--ref-workers`` thread pools / worker processes, for a side-by-side reference.

The client runs on uvloop in this process: by default a minimal asyncio protocol that only
timestamps, finds the end of the head and counts body bytes (``--client aiohttp`` uses aiohttp's
client instead, several times the CPU per connection). The client, the appliance and the origin
share the same ``--cpus`` cores, so client-side work is in the waiters' figures too.
Target of the issue: waiters' TTFB p50 and p99 at most 20 ms above the origin's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import uvloop

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchError,
    Server,
    ServerGroup,
    appliance_server,
    bench_cpus,
    machine_info,
    median,
    nginx_server,
    origin_count,
    origin_fault,
    percentile,
    run_and_report,
    start_origin,
    table,
    varnish_server,
    wait_appliance_ready,
)

MODES = ("full", "range")
CONNECTIONS = ("new", "open")
WARM_KEY = "/v/sf-warm/warm.m4s"
REFS = ("varnish", "nginx")
TARGET_MS = 20.0


@dataclass(frozen=True)
class Settings:
    concurrency: int
    delay_ms: int
    """Origin delay before its response head."""
    size: int
    """Object size, bytes."""
    keys: int
    """Fresh keys per (workers, mode) case."""
    workers: tuple[int, ...]
    modes: tuple[str, ...]
    range_start: int
    range_length: int
    direct: int
    """Direct origin requests per key (sequential)."""
    cpus: tuple[int, ...]
    client: str
    """"raw" (a minimal asyncio protocol) or "aiohttp"."""
    lead_ms: float
    """The burst's first request goes this long before the others (0: all at once)."""
    connections: tuple[str, ...]
    """"new": every request on a new connection; "open": on open keep-alive connections."""
    refs: tuple[str, ...]
    """Reference servers run through the same bursts (varnish, nginx)."""
    ref_workers: int
    """Their nginx worker_processes / Varnish thread_pools."""

    def headers(self, mode: str) -> dict[str, str]:
        if mode == "range":
            end = self.range_start + self.range_length - 1
            return {"Range": f"bytes={self.range_start}-{end}"}
        return {}

    def expected(self, mode: str) -> tuple[int, int]:
        """(status, body length) every answer must have."""
        return (206, self.range_length) if mode == "range" else (200, self.size)


@dataclass
class Sample:
    status: int
    started_s: float
    """Start of this request after the start of the burst."""
    sent_s: float
    """Start of the request to its bytes being written (connecting, on a new connection)."""
    head_s: float
    ttfb_s: float
    """Start of the request to the first body byte."""
    total_s: float
    nbytes: int
    cache_status: str
    error: str = ""


class _Probe(asyncio.Protocol):
    """Raw HTTP/1.1 GETs that timestamp their first response byte and first body byte.

    Much cheaper per connection than a full client, so that with hundreds of connections on
    the cores the server uses, the figures are mostly the server's and not the client's. One
    request at a time; with ``keep_open`` the connection stays open for the next one.
    """

    def __init__(self, keep_open: bool = False) -> None:
        self.keep_open = keep_open
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reset(0.0, 0.0)

    def _reset(self, t0: float, t_burst: float) -> None:
        self.t0 = t0
        self.t_burst = t_burst
        self.sent_t = 0.0
        self.done: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.head_t = 0.0
        self.ttfb_t = 0.0
        self.status = 0
        self.length = -1
        self.cache_status = ""
        self.received = 0
        self.pending: bytes | None = None

    def request(self, request: bytes, t0: float, t_burst: float) -> asyncio.Future[Sample]:
        """Send ``request`` (now, or once connected); ``t0``: when this request started."""
        self._reset(t0, t_burst)
        if self.transport is None:
            self.pending = request
        else:
            self.sent_t = time.perf_counter()
            self.transport.write(request)
        return self.done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.connected.set_result(None)
        if self.pending is not None:
            self.sent_t = time.perf_counter()
            self.transport.write(self.pending)
            self.pending = None

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.head_t:
            self.head_t = now
        if self.length < 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(self.head[:end])
            body = len(self.head) - end - 4
            self.head = b""
        else:
            body = len(data)
        if body and not self.ttfb_t:
            self.ttfb_t = now
        self.received += body
        if self.received >= self.length:
            self._finish("")

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "cache-status":
                self.cache_status = value.strip()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionResetError("closed"))
            self.connected.exception()
        short = f"closed after {self.received} of {self.length} body bytes"
        self._finish(f"{type(exc).__name__}: {exc}" if exc else short)

    def _finish(self, error: str) -> None:
        if self.done.done():
            return
        now = time.perf_counter()
        if self.transport is not None and (error or not self.keep_open):
            self.transport.close()
        self.done.set_result(
            Sample(
                self.status,
                self.t0 - self.t_burst,
                (self.sent_t or now) - self.t0,
                (self.head_t or now) - self.t0,
                (self.ttfb_t or now) - self.t0,
                now - self.t0,
                self.received,
                self.cache_status,
                error,
            )
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _request_bytes(url: str, headers: dict[str, str], keep_open: bool) -> bytes:
    u = urllib.parse.urlsplit(url)
    lines = [f"GET {u.path} HTTP/1.1", f"Host: {u.hostname}:{u.port}"]
    if not keep_open:
        lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _failed(t0: float, t_burst: float, e: BaseException) -> Sample:
    dt = time.perf_counter() - t0
    return Sample(0, t0 - t_burst, dt, dt, dt, dt, 0, "", f"{type(e).__name__}: {e}")


async def fetch_raw(url: str, headers: dict[str, str], t_burst: float) -> Sample:
    """One request on a new connection, timed from before connecting."""
    u = urllib.parse.urlsplit(url)
    request = _request_bytes(url, headers, keep_open=False)
    t0 = time.perf_counter()
    probe = _Probe()
    done = probe.request(request, t0, t_burst)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(120):
            await loop.create_connection(lambda: probe, u.hostname or "127.0.0.1", u.port or 80)
            return await done
    except (OSError, TimeoutError) as e:
        probe.close()
        return _failed(t0, t_burst, e)


async def open_connections(url: str, n: int, warm_url: str) -> list[_Probe]:
    """``n`` keep-alive connections, each having fetched ``warm_url`` (a stored object), so
    the server has accepted them and they are idle, as players between two segments."""
    u = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    warm = _request_bytes(warm_url, {}, keep_open=True)

    async def one() -> _Probe:
        probe = _Probe(keep_open=True)
        await loop.create_connection(lambda: probe, u.hostname or "127.0.0.1", u.port or 80)
        t = time.perf_counter()
        got = await probe.request(warm, t, t)
        if got.error or got.status != 200:
            probe.close()
            raise BenchError(f"warm-up request on a new connection failed: {got}")
        return probe

    async with asyncio.timeout(60):
        return list(await asyncio.gather(*(one() for _ in range(n))))


async def burst_open(
    probes: list[_Probe], url: str, headers: dict[str, str], lead: float = 0.0
) -> list[Sample]:
    """One request on each open connection, written in one pass (the first ``lead`` seconds
    early); each is timed from the moment it is written."""
    request = _request_bytes(url, headers, keep_open=True)
    t = time.perf_counter()
    dones = [probes[0].request(request, t, t)]
    if lead:
        await asyncio.sleep(lead)
    for p in probes[1:]:
        dones.append(p.request(request, time.perf_counter(), t))
    try:
        async with asyncio.timeout(120):
            return list(await asyncio.gather(*dones))
    except TimeoutError as e:
        return [d.result() if d.done() else _failed(t, t, e) for d in dones]


async def fetch_aiohttp(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], t_burst: float
) -> Sample:
    t0 = time.perf_counter()
    try:
        async with session.get(url, headers=headers) as r:
            head = time.perf_counter() - t0
            first = await r.content.readany()
            ttfb = time.perf_counter() - t0
            n = len(first)
            while chunk := await r.content.readany():
                n += len(chunk)
            return Sample(
                r.status,
                t0 - t_burst,
                0.0,
                head,
                ttfb,
                time.perf_counter() - t0,
                n,
                r.headers.get("Cache-Status", ""),
            )
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return _failed(t0, t_burst, e)


async def burst(
    url: str, n: int, headers: dict[str, str], client: str, lead: float = 0.0
) -> list[Sample]:
    """``n`` requests, each on a new connection: all at once, or the first ``lead`` seconds
    before the others. The first sample is the first request's."""
    if client == "raw":
        t = time.perf_counter()
        first = asyncio.ensure_future(fetch_raw(url, headers, t))
        if lead:
            await asyncio.sleep(lead)
        rest = await asyncio.gather(*(fetch_raw(url, headers, t) for _ in range(n - 1)))
        return [await first, *rest]
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=conn, timeout=timeout, auto_decompress=False
    ) as session:
        t = time.perf_counter()
        first = asyncio.ensure_future(fetch_aiohttp(session, url, headers, t))
        if lead:
            await asyncio.sleep(lead)
        rest = await asyncio.gather(
            *(fetch_aiohttp(session, url, headers, t) for _ in range(n - 1))
        )
        return [await first, *rest]


async def direct(url: str, n: int, headers: dict[str, str], client: str) -> list[Sample]:
    """``n`` sequential requests straight to the origin, each on a new connection."""
    out = []
    for _ in range(n):
        out.extend(await burst(url, 1, headers, client))
    return out


@dataclass
class KeyResult:
    server: str
    workers: int
    mode: str
    connections: str
    key: str
    upstream_fetches: int
    origin_ttfb_ms: list[float]
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    ttfb_max_ms: float
    launch_spread_ms: float
    """When the last of the burst's requests started, after the first."""
    connect_p50_ms: float
    """Median time from a request's start to its bytes being written (0 on open connections)."""
    leader_head_ms: float
    """Response head of the burst's first request (the one that starts the fill), from its start."""
    hot_ttfb_p50_ms: float
    """The same burst again once the object is stored (all hits): the cost of the load alone."""
    hot_ttfb_p99_ms: float
    outcomes: dict[str, int]
    bad: int
    """Answers with the wrong status or length, or errors."""
    errors: list[str]
    ttfb_ms: list[float]


def outcome_of(cache_status: str) -> str:
    """The appliance's Cache-Status as one word (the reference servers send none)."""
    if "collapsed" in cache_status:
        return "collapsed"
    if "stored" in cache_status:
        return "miss"
    if "hit" in cache_status:
        return "hit"
    return cache_status or "-"


@dataclass(frozen=True)
class Case:
    server: str
    """appliance, varnish or nginx."""
    workers: int
    """Appliance workers, nginx worker_processes, Varnish thread_pools."""
    url: str


async def bursts(
    s: Settings, url: str, headers: dict[str, str], conns: str, between: Callable[[], int]
) -> tuple[list[Sample], int, list[Sample]]:
    """The cold burst, ``between()`` (the origin's count), and the same burst hot."""
    if conns == "new":
        cold = await burst(url, s.concurrency, headers, s.client, s.lead_ms / 1000)
        count = between()
        return cold, count, await burst(url, s.concurrency, headers, s.client)
    base = url.split("/v/", 1)[0]
    probes = await open_connections(url, s.concurrency, base + WARM_KEY)
    try:
        cold = await burst_open(probes, url, headers, s.lead_ms / 1000)
        count = between()
        return cold, count, await burst_open(probes, url, headers)
    finally:
        for p in probes:
            p.close()


def run_key(
    s: Settings, case: Case, origin: str, mode: str, conns: str, n: int, root: Path
) -> KeyResult:
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    name = f"{case.server}-w{case.workers}-{mode}-{conns}"
    key = f"/v/sf-{stamp}/{name}/seg-{n:05d}.m4s"
    twin = f"/v/sf-{stamp}/direct-{name}/seg-{n:05d}.m4s"
    body = os.urandom(s.size)
    for path in (key, twin):
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body)
    headers = s.headers(mode)
    status, length = s.expected(mode)
    direct_samples = uvloop.run(direct(origin + twin, s.direct, headers, s.client))
    samples, fetches, hot = uvloop.run(
        bursts(s, case.url + key, headers, conns, lambda: origin_count(origin, key))
    )
    hot_ttfb = [x.ttfb_s * 1000 for x in hot if x.status == status and x.nbytes == length]
    # The test upstream ignores Range (answers 200 with the whole body): its TTFB still counts.
    if any(x.status not in (200, 206) or not x.nbytes for x in direct_samples):
        raise BenchError(f"origin answered {twin} wrongly: {direct_samples[0]}")
    good = [x for x in samples if x.status == status and x.nbytes == length]
    bad = [x for x in samples if x.status != status or x.nbytes != length]
    ttfb = [x.ttfb_s * 1000 for x in good]
    outcomes: dict[str, int] = {}
    for x in samples:
        o = outcome_of(x.cache_status)
        outcomes[o] = outcomes.get(o, 0) + 1
    return KeyResult(
        server=case.server,
        workers=case.workers,
        mode=mode,
        connections=conns,
        key=key,
        upstream_fetches=fetches,
        origin_ttfb_ms=[x.ttfb_s * 1000 for x in direct_samples],
        ttfb_p50_ms=percentile(ttfb, 50),
        ttfb_p99_ms=percentile(ttfb, 99),
        ttfb_max_ms=max(ttfb, default=float("nan")),
        launch_spread_ms=max(x.started_s for x in samples) * 1000,
        connect_p50_ms=median([x.sent_s * 1000 for x in samples]),
        leader_head_ms=samples[0].head_s * 1000,
        hot_ttfb_p50_ms=percentile(hot_ttfb, 50),
        hot_ttfb_p99_ms=percentile(hot_ttfb, 99),
        outcomes=outcomes,
        bad=len(bad),
        errors=sorted({x.error or f"status {x.status}, {x.nbytes} bytes" for x in bad})[:5],
        ttfb_ms=ttfb,
    )


def summarize(results: list[KeyResult]) -> list[dict[str, Any]]:
    rows = []
    cases = list(dict.fromkeys((r.server, r.workers, r.mode, r.connections) for r in results))
    for case in cases:
        mine = [r for r in results if (r.server, r.workers, r.mode, r.connections) == case]
        server, workers, mode, conns = case
        origin = median([t for r in mine for t in r.origin_ttfb_ms])
        ttfb = [t for r in mine for t in r.ttfb_ms]
        p50, p99 = percentile(ttfb, 50), percentile(ttfb, 99)
        rows.append(
            {
                "server": server,
                "workers": workers,
                "mode": mode,
                "connections": conns,
                "keys": len(mine),
                "upstream_fetches": [r.upstream_fetches for r in mine],
                "origin_ttfb_p50_ms": origin,
                "ttfb_p50_ms": p50,
                "ttfb_p99_ms": p99,
                "delta_p50_ms": p50 - origin,
                "delta_p99_ms": p99 - origin,
                "launch_spread_ms": max(r.launch_spread_ms for r in mine),
                "connect_p50_ms": median([r.connect_p50_ms for r in mine]),
                "leader_head_ms": median([r.leader_head_ms for r in mine]),
                "hot_ttfb_p50_ms": median([r.hot_ttfb_p50_ms for r in mine]),
                "hot_ttfb_p99_ms": median([r.hot_ttfb_p99_ms for r in mine]),
                "bad": sum(r.bad for r in mine),
                "outcomes": {
                    k: sum(r.outcomes.get(k, 0) for r in mine)
                    for k in sorted({k for r in mine for k in r.outcomes})
                },
            }
        )
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "server",
            "workers",
            "request",
            "conns",
            "upstream fetches/key",
            "origin TTFB ms",
            "waiters p50 ms",
            "p99 ms",
            "p50 - origin",
            "p99 - origin",
            "leader head ms",
            "hot p50 ms",
            "hot p99 ms",
            "launch spread ms",
            "connect ms",
            "bad",
            "outcomes",
        ],
        [
            [
                r["server"],
                r["workers"],
                r["mode"],
                r["connections"],
                " ".join(map(str, r["upstream_fetches"])),
                f"{r['origin_ttfb_p50_ms']:.1f}",
                f"{r['ttfb_p50_ms']:.1f}",
                f"{r['ttfb_p99_ms']:.1f}",
                f"{r['delta_p50_ms']:+.1f}",
                f"{r['delta_p99_ms']:+.1f}",
                f"{r['leader_head_ms']:.1f}",
                f"{r['hot_ttfb_p50_ms']:.1f}",
                f"{r['hot_ttfb_p99_ms']:.1f}",
                f"{r['launch_spread_ms']:.0f}",
                f"{r['connect_p50_ms']:.1f}",
                r["bad"],
                " ".join(f"{k} {v}" for k, v in r["outcomes"].items()),
            ]
            for r in rows
        ],
    )


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, for the appliance rows."""
    lines = []
    for r in rows:
        if r["server"] != "appliance":
            continue
        one = all(n == 1 for n in r["upstream_fetches"])
        fast50 = r["delta_p50_ms"] <= TARGET_MS
        fast99 = r["delta_p99_ms"] <= TARGET_MS
        lines.append(
            f"target workers={r['workers']} {r['mode']} {r['connections']} conns: "
            "one upstream fetch per key: "
            f"{'met' if one else 'NOT met'}; p50 <= origin + {TARGET_MS:.0f} ms: "
            f"{'met' if fast50 else 'NOT met'}; p99 <= origin + {TARGET_MS:.0f} ms: "
            f"{'met' if fast99 else 'NOT met'}"
        )
    return lines


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def start_case(
    group: ServerGroup, s: Settings, work: Path, origin_port: int, server: str, workers: int
) -> tuple[Server, Case]:
    d = work / f"{server}-{workers}"
    if server == "appliance":
        srv, port = appliance_server(d, origin_port, workers, s.cpus)
        group.add(srv)
        wait_appliance_ready(srv, port, d, workers)
    else:
        if server == "varnish":
            srv, port = varnish_server(d, origin_port, workers, "1G", s.cpus)
        else:
            srv, port = nginx_server(d, origin_port, workers, s.cpus)
        group.add(srv)
        srv.wait_http(f"http://127.0.0.1:{port}/healthz")
    return srv, Case(server, workers, f"http://127.0.0.1:{port}")


def run(s: Settings, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vodedge-sf-"))
    results: list[KeyResult] = []
    plan = [("appliance", w) for w in s.workers] + [(r, s.ref_workers) for r in s.refs]
    try:
        root = work / "origin"
        root.mkdir()
        with ServerGroup() as group:
            _, origin = start_origin(group, root, work)
            origin_port = int(origin.rsplit(":", 1)[1])
            (root / WARM_KEY.lstrip("/")).parent.mkdir(parents=True)
            (root / WARM_KEY.lstrip("/")).write_bytes(os.urandom(1024))
            origin_fault(origin, "*", "delay", s.delay_ms)
            for server, workers in plan:
                srv, case = start_case(group, s, work, origin_port, server, workers)
                warm = uvloop.run(burst(case.url + WARM_KEY, 1, {}, "raw"))[0]
                if warm.status != 200:
                    raise BenchError(f"{server}: warm-up object: {warm}")
                for mode, conns, n in itertools.product(
                    s.modes, s.connections, range(1, s.keys + 1)
                ):
                    r = run_key(s, case, origin, mode, conns, n, root)
                    results.append(r)
                    print(
                        f"  {server} w{workers} {mode:<5} {conns:<4} key {n}: "
                        f"{r.upstream_fetches} "
                        f"upstream fetch(es), origin TTFB {median(r.origin_ttfb_ms):.1f} ms, "
                        f"waiters p50 {r.ttfb_p50_ms:.1f} p99 {r.ttfb_p99_ms:.1f} ms, "
                        f"{r.bad} bad" + (f" ({'; '.join(r.errors)})" if r.bad else ""),
                        flush=True,
                    )
                srv.stop()
    finally:
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "single_flight",
        "settings": asdict(s),
        "machine": machine_info(),
        "summary": summarize(results),
        "keys": [{k: v for k, v in asdict(r).items() if k != "ttfb_ms"} for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 key per case instead of 5")
    ap.add_argument("--keys", type=int, help="fresh keys per case (default 5)")
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--delay-ms", type=int, default=300)
    ap.add_argument("--size", type=int, default=2 * 2**20, help="object bytes (default 2 MiB)")
    ap.add_argument("--workers", default="2,4", help="appliance worker counts (default 2,4)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    ap.add_argument(
        "--connections",
        default=",".join(CONNECTIONS),
        help="new: each request on a new connection; open: on open keep-alive connections, "
        "as players between two segments (default both)",
    )
    ap.add_argument(
        "--refs",
        default=",".join(REFS),
        help=f"reference servers put through the same bursts (default {','.join(REFS)}; '' none)",
    )
    ap.add_argument("--ref-workers", type=int, default=2)
    ap.add_argument(
        "--lead-ms",
        type=float,
        default=0.0,
        help="send the first request this long before the other ones (default 0: all at once)",
    )
    ap.add_argument("--direct", type=int, default=3, help="direct origin requests per key")
    ap.add_argument("--cpus", type=int, default=2, help="cores for everything (default 2)")
    ap.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: a minimal asyncio protocol on uvloop (default); aiohttp: its client",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    ap.add_argument("--json", type=Path, help="results file (default bench/results/...)")
    args = ap.parse_args(argv)

    modes = tuple(m for m in args.modes.split(",") if m)
    if not set(modes) <= set(MODES):
        ap.error(f"--modes: subset of {','.join(MODES)}")
    conns = tuple(c for c in args.connections.split(",") if c)
    if not conns or not set(conns) <= set(CONNECTIONS):
        ap.error(f"--connections: subset of {','.join(CONNECTIONS)}")
    refs = tuple(r for r in args.refs.split(",") if r)
    if not set(refs) <= set(REFS):
        ap.error(f"--refs: subset of {','.join(REFS)}")
    s = Settings(
        concurrency=args.concurrency,
        delay_ms=args.delay_ms,
        size=args.size,
        keys=args.keys or (1 if args.quick else 5),
        workers=tuple(int(w) for w in args.workers.split(",") if w),
        modes=modes,
        range_start=args.size // 2,
        range_length=min(64 * 1024, args.size - args.size // 2),
        direct=args.direct,
        cpus=bench_cpus(args.cpus),
        client=args.client,
        lead_ms=args.lead_ms,
        connections=conns,
        refs=refs,
        ref_workers=args.ref_workers,
    )
    os.sched_setaffinity(0, s.cpus)
    raise_fd_limit(4 * s.concurrency + 256)
    print(
        f"single flight: {s.concurrency} concurrent cold requests, origin delay {s.delay_ms} ms, "
        f"{s.size} byte objects, workers {','.join(map(str, s.workers))}, {s.keys} key(s) per "
        f"case; client, appliance and origin on CPUs {','.join(map(str, s.cpus))}",
        flush=True,
    )
    return run_and_report(
        "single_flight",
        lambda: run(s, args.keep),
        lambda result: [format_summary(result["summary"]), *verdict(result["summary"])],
        args.json,
    )


if __name__ == "__main__":
    raise SystemExit(main())

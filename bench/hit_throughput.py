"""Hit throughput: the appliance against Varnish and nginx on a hot set, wrk on loopback.

Usage (from the repo root, after ``bash bench/install_refs.sh``)::

    .venv/bin/python bench/hit_throughput.py            # 3 rounds x 10 s per server and size
    .venv/bin/python bench/hit_throughput.py --quick    # 1 round x 3 s
    .venv/bin/python bench/hit_throughput.py --no-verify --servers appliance,varnish

One origin (the appliance test upstream) serves two hot sets: ``--objects`` objects of 2 MiB
and as many of 256 KiB. Three reverse-proxy caches run side by side in front of it, all pinned to
the same ``--cpus`` cores (wrk too: it shares those cores, so every server pays for its client):

- the appliance: ``--workers`` worker processes, access log off, checksums verified (the
  shipped default; ``--no-verify`` turns that off);
- Varnish: malloc storage, ``thread_pools`` = ``--workers`` (threads are per connection);
- nginx: ``worker_processes`` = ``--workers``, ``proxy_cache`` on disk (page cache),
  ``sendfile on``, ``proxy_cache_lock on``, access log off, unlimited keep-alive requests.

Every object is fetched through every server until it is a hit; then, per object size, a short
wrk warm-up per server and ``--rounds`` interleaved rounds (appliance, Varnish, nginx; then
Varnish, nginx, appliance; ... — who goes first rotates, so each follows each equally often)
of ``wrk -t{threads} -c{connections} -d{duration}`` with ``bench/configs/hotset.lua``
spreading requests over the set. Per run: requests/s, and server CPU seconds (utime + stime of
the server and all its children, from /proc) per GB of wrk's transfer total. The table gives the
medians and their ratios to Varnish; the origin's request count must not move while measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CLK_TCK,
    CONFIGS,
    BenchError,
    Server,
    ServerGroup,
    appliance_server,
    bench_cpus,
    cpu_ticks,
    find_tool,
    http_get,
    machine_info,
    median,
    nginx_server,
    origin_count,
    run_and_report,
    start_origin,
    table,
    varnish_server,
    wait_appliance_ready,
    wait_quiet,
)

SIZES = {"2MiB": 2 * 2**20, "256KiB": 256 * 2**10}
SERVERS = ("appliance", "varnish", "nginx")
# Also accepted by --servers: the appliance with verify_checksums off, to price the checksums.
KNOWN_SERVERS = (*SERVERS, "appliance-noverify")
REFERENCE = "varnish"


@dataclass(frozen=True)
class Settings:
    duration: float
    """Seconds per measured wrk run."""
    warmup: float
    """Seconds of wrk per server and size before measuring."""
    rounds: int
    """Interleaved measured runs per server and size."""
    connections: int
    threads: int
    """wrk threads."""
    objects: int
    """Objects per hot set (per size)."""
    workers: int
    """Appliance workers = nginx worker_processes = Varnish thread_pools."""
    cpus: tuple[int, ...]
    """Cores the servers and wrk are pinned to."""
    verify_checksums: bool
    varnish_storage: str
    sizes: tuple[str, ...]
    servers: tuple[str, ...]
    max_idle_busy: float
    """Before each run, wait until the cores are at most this busy (other jobs)..."""
    quiet_patience: float
    """...but no longer than this many seconds."""
    max_other: float
    """A run during which other jobs took more than this share of the cores is repeated..."""
    retries: int
    """...at most this many times."""


@dataclass
class Target:
    name: str
    base_url: str
    server: Server
    is_hit: Callable[[dict[str, str]], bool]


@dataclass
class Run:
    server: str
    size: str
    round: int
    requests: int
    bytes: int
    seconds: float
    req_per_s: float
    gbit_per_s: float
    server_cpu_s: float
    server_user_share: float
    """User-space part of the server's CPU time (the rest is kernel: syscalls, TCP, copies)."""
    cpu_s_per_gb: float
    client_cpu_s: float
    cpus_busy: float
    """Fraction of the pinned cores busy during the run (anything, from /proc/stat)."""
    softirq: float
    """Fraction of the pinned cores in (soft)irq: loopback TCP work no process is charged."""
    other: float
    """Busy fraction charged neither to the server nor to wrk nor to softirq: other jobs."""
    quiet_before: float
    """Busy fraction of the cores just before the run (servers idle)."""
    latency_p50_ms: float
    latency_p99_ms: float
    errors: dict[str, int]


def hot_paths(size: str, count: int) -> tuple[str, str, list[str]]:
    """(prefix, suffix, paths) of one hot set, as hotset.lua builds them."""
    prefix, suffix = f"/v/bench-{size.lower()}/h264/seg-", ".m4s"
    return prefix, suffix, [f"{prefix}{i:05d}{suffix}" for i in range(1, count + 1)]


def wrk_argv(
    wrk: str, s: Settings, url: str, prefix: str, count: int, suffix: str, seconds: float
) -> list[str]:
    return [
        wrk,
        f"-t{s.threads}",
        f"-c{s.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(CONFIGS / "hotset.lua"),
        url,
        "--",
        prefix,
        str(count),
        suffix,
    ]


def run_wrk(argv: list[str], cpus: tuple[int, ...]) -> tuple[dict[str, Any], float]:
    """Run wrk; its WRK_JSON summary and the client CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line[len("WRK_JSON ") :])
            return data, client_cpu
    raise BenchError(f"wrk gave no summary (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")


def measure(t: Target, s: Settings, wrk: str, size: str, round_no: int, seconds: float) -> Run:
    prefix, suffix, _ = hot_paths(size, s.objects)
    argv = wrk_argv(wrk, s, t.base_url, prefix, s.objects, suffix, seconds)
    quiet = wait_quiet(s.cpus, s.max_idle_busy, s.quiet_patience)
    user0, sys0 = t.server.cpu_times()
    ticks0 = cpu_ticks(s.cpus)
    w, client_cpu = run_wrk(argv, s.cpus)
    ticks = cpu_ticks(s.cpus) - ticks0
    user1, sys1 = t.server.cpu_times()
    user, cpu = user1 - user0, (user1 - user0) + (sys1 - sys0)
    total = max(1, ticks.total)
    other = ticks.busy / CLK_TCK - ticks.softirq / CLK_TCK - cpu - client_cpu
    secs = w["duration_us"] / 1e6
    nbytes = int(w["bytes"])
    return Run(
        server=t.name,
        size=size,
        round=round_no,
        requests=int(w["requests"]),
        bytes=nbytes,
        seconds=secs,
        req_per_s=w["requests"] / secs,
        gbit_per_s=nbytes * 8 / secs / 1e9,
        server_cpu_s=cpu,
        server_user_share=user / cpu if cpu else float("nan"),
        cpu_s_per_gb=cpu / (nbytes / 1e9) if nbytes else float("nan"),
        client_cpu_s=client_cpu,
        cpus_busy=ticks.busy / total,
        softirq=ticks.softirq / total,
        other=max(0.0, other * CLK_TCK / total),
        quiet_before=quiet,
        latency_p50_ms=w["latency_p50_us"] / 1000,
        latency_p99_ms=w["latency_p99_us"] / 1000,
        errors={k: int(v) for k, v in w["errors"].items()},
    )


def measure_clean(t: Target, s: Settings, wrk: str, size: str, round_no: int) -> Run:
    """A measured run; repeated (up to ``s.retries`` times) while other jobs took more than
    ``s.max_other`` of the cores during it. The last try is kept either way (and shows it)."""
    for attempt in range(s.retries + 1):
        r = measure(t, s, wrk, size, round_no, s.duration)
        if r.other <= s.max_other or attempt == s.retries:
            return r
        print(
            f"  {size:>6} round {round_no} {t.name:<18} other jobs took {100 * r.other:.0f} % "
            "of the cores: measuring again",
            flush=True,
        )
    raise AssertionError("unreachable")


def warm(t: Target, paths: list[str], length: int) -> None:
    """Fetch every path through ``t`` until it answers from its cache."""
    for path in paths:
        for _ in range(100):
            status, headers, n = http_get(t.base_url + path)
            if status == 200 and n == length and t.is_hit(headers):
                break
            time.sleep(0.02)
        else:
            raise BenchError(f"{t.name}: {path} never became a hit (last status {status})")


def _appliance_hit(h: dict[str, str]) -> bool:
    return h.get("cache-status", "").startswith("vodedge; hit")


def _varnish_hit(h: dict[str, str]) -> bool:
    return len(h.get("x-varnish", "").split()) == 2  # "this-xid cached-xid" on a hit


def _nginx_hit(h: dict[str, str]) -> bool:
    return h.get("x-cache-status") == "HIT"


def start_targets(group: ServerGroup, s: Settings, work: Path, origin_port: int) -> list[Target]:
    targets: list[Target] = []
    for name in s.servers:
        d = work / name
        if name in ("appliance", "appliance-noverify"):
            verify = s.verify_checksums and name == "appliance"
            srv, port = appliance_server(
                d, origin_port, s.workers, s.cpus, verify_checksums=verify, name=name
            )
            group.add(srv)
            wait_appliance_ready(srv, port, d, s.workers)
            hit = _appliance_hit
        elif name == "varnish":
            srv, port = varnish_server(d, origin_port, s.workers, s.varnish_storage, s.cpus)
            group.add(srv)
            srv.wait_http(f"http://127.0.0.1:{port}/healthz")
            hit = _varnish_hit
        elif name == "nginx":
            srv, port = nginx_server(d, origin_port, s.workers, s.cpus)
            group.add(srv)
            srv.wait_http(f"http://127.0.0.1:{port}/healthz")
            hit = _nginx_hit
        else:
            raise BenchError(f"unknown server {name!r}")
        targets.append(Target(name, f"http://127.0.0.1:{port}", srv, hit))
    return targets


def summarize(runs: list[Run], s: Settings) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for size in s.sizes:
        ref = [r for r in runs if r.size == size and r.server == REFERENCE]
        ref_rps = median([r.req_per_s for r in ref]) if ref else float("nan")
        ref_cpu = median([r.cpu_s_per_gb for r in ref]) if ref else float("nan")
        for name in s.servers:
            mine = [r for r in runs if r.size == size and r.server == name]
            rps = median([r.req_per_s for r in mine])
            cpu = median([r.cpu_s_per_gb for r in mine])
            # Paired by round (the same minute of the machine's life): drift between rounds,
            # which moves every server alike, cancels out of these.
            ref_by_round = {r.round: r for r in ref}
            paired = [
                (
                    r.req_per_s / ref_by_round[r.round].req_per_s,
                    r.cpu_s_per_gb / ref_by_round[r.round].cpu_s_per_gb,
                )
                for r in mine
                if r.round in ref_by_round
            ]
            out.append(
                {
                    "server": name,
                    "size": size,
                    "req_per_s": rps,
                    "req_per_s_vs_varnish": rps / ref_rps,
                    "cpu_s_per_gb": cpu,
                    "cpu_s_per_gb_vs_varnish": cpu / ref_cpu,
                    "gbit_per_s": median([r.gbit_per_s for r in mine]),
                    "latency_p99_ms": median([r.latency_p99_ms for r in mine]),
                    "server_user_share": median([r.server_user_share for r in mine]),
                    "cpus_busy": median([r.cpus_busy for r in mine]),
                    "softirq": median([r.softirq for r in mine]),
                    "other": max(r.other for r in mine),
                    "client_cpu_share": sum(r.client_cpu_s for r in mine)
                    / sum(r.client_cpu_s + r.server_cpu_s for r in mine),
                    "runs_req_per_s": [round(r.req_per_s) for r in mine],
                    "rounds_vs_varnish": [[round(a, 2), round(b, 2)] for a, b in paired],
                    "paired_req_per_s_vs_varnish": median([a for a, _ in paired])
                    if paired
                    else float("nan"),
                    "paired_cpu_s_per_gb_vs_varnish": median([b for _, b in paired])
                    if paired
                    else float("nan"),
                    "errors": sum(sum(r.errors.values()) for r in mine),
                }
            )
    return out


def format_summary(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "server",
            "size",
            "req/s (median)",
            "x Varnish",
            "CPU-s/GB",
            "x Varnish",
            "user %",
            "Gbit/s",
            "p99 ms",
            "busy %",
            "softirq %",
            "other %",
            "wrk CPU %",
            "req/s per round",
            "x Varnish per round (req/s, CPU-s/GB)",
            "errors",
        ],
        [
            [
                r["server"],
                r["size"],
                r["req_per_s"],
                f"{r['req_per_s_vs_varnish']:.2f}",
                f"{r['cpu_s_per_gb']:.2f}",
                f"{r['cpu_s_per_gb_vs_varnish']:.2f}",
                f"{100 * r['server_user_share']:.0f}",
                f"{r['gbit_per_s']:.1f}",
                f"{r['latency_p99_ms']:.1f}",
                f"{100 * r['cpus_busy']:.0f}",
                f"{100 * r['softirq']:.0f}",
                f"{100 * r['other']:.0f}",
                f"{100 * r['client_cpu_share']:.0f}",
                " ".join(str(x) for x in r["runs_req_per_s"]),
                " ".join(f"{a:.2f}/{b:.2f}" for a, b in r["rounds_vs_varnish"]),
                r["errors"],
            ]
            for r in rows
        ],
    )


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets for the appliance, met or not."""
    lines = []
    for r in rows:
        if r["server"] != "appliance" or REFERENCE not in {x["server"] for x in rows}:
            continue
        rps_ok = r["req_per_s_vs_varnish"] >= 1.0
        cpu_ok = r["cpu_s_per_gb_vs_varnish"] <= 1.0
        lines.append(
            f"target {r['size']}: req/s >= 1.0x Varnish: {'met' if rps_ok else 'NOT met'} "
            f"({r['req_per_s_vs_varnish']:.2f}x); CPU-s/GB <= Varnish: "
            f"{'met' if cpu_ok else 'NOT met'} ({r['cpu_s_per_gb_vs_varnish']:.2f}x); "
            f"median of the per-round ratios {r['paired_req_per_s_vs_varnish']:.2f}x req/s, "
            f"{r['paired_cpu_s_per_gb_vs_varnish']:.2f}x CPU-s/GB"
        )
    return lines


def run(s: Settings, keep: bool) -> dict[str, Any]:
    wrk = find_tool("wrk")
    if wrk is None:
        raise BenchError("wrk not found: run bash bench/install_refs.sh")
    work = Path(tempfile.mkdtemp(prefix="vodedge-hit-"))
    runs: list[Run] = []
    origin_moves: dict[str, int] = {}
    try:
        root = work / "origin"
        for size in s.sizes:
            for path in hot_paths(size, s.objects)[2]:
                f = root / path.lstrip("/")
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(os.urandom(SIZES[size]))
        with ServerGroup() as group:
            _, origin = start_origin(group, root, work)
            targets = start_targets(group, s, work, int(origin.rsplit(":", 1)[1]))
            for size in s.sizes:
                paths = hot_paths(size, s.objects)[2]
                for t in targets:
                    warm(t, paths, SIZES[size])
                    if s.warmup > 0:
                        measure(t, s, wrk, size, 0, s.warmup)
                before = origin_count(origin)
                for round_no in range(1, s.rounds + 1):
                    # Rotate who goes first, so every server follows every other one equally
                    # often (a run can leave the kernel's socket/page state to the next one).
                    k = (round_no - 1) % len(targets)
                    for t in targets[k:] + targets[:k]:
                        r = measure_clean(t, s, wrk, size, round_no)
                        runs.append(r)
                        print(
                            f"  {size:>6} round {round_no} {t.name:<18} {r.req_per_s:>9,.0f} req/s"
                            f"  {r.cpu_s_per_gb:6.2f} CPU-s/GB  {r.gbit_per_s:5.1f} Gbit/s",
                            flush=True,
                        )
                origin_moves[size] = origin_count(origin) - before
    finally:
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    rows = summarize(runs, s)
    return {
        "benchmark": "hit_throughput",
        "settings": asdict(s),
        "machine": machine_info(),
        "origin_requests_while_measuring": origin_moves,
        "summary": rows,
        "runs": [asdict(r) for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 round x 3 s, 1 s warm-up")
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 10)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    ap.add_argument("--warmup", type=float, help="wrk warm-up seconds per server (default 3)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--objects", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2, help="cores for servers and wrk (default 2)")
    ap.add_argument("--no-verify", action="store_true", help="appliance: verify_checksums off")
    ap.add_argument("--varnish-storage", default="1G")
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"subset of {','.join(SIZES)}")
    ap.add_argument(
        "--servers", default=",".join(SERVERS), help=f"subset of {','.join(KNOWN_SERVERS)}"
    )
    ap.add_argument(
        "--max-idle-busy",
        type=float,
        default=0.1,
        help="before each run wait until the cores are at most this busy (default 0.1)",
    )
    ap.add_argument("--quiet-patience", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument(
        "--max-other",
        type=float,
        default=0.05,
        help="repeat a run in which other jobs took more than this share of the cores",
    )
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    ap.add_argument("--json", type=Path, help="results file (default bench/results/...)")
    args = ap.parse_args(argv)

    sizes = tuple(x for x in args.sizes.split(",") if x)
    servers = tuple(x for x in args.servers.split(",") if x)
    if not set(sizes) <= set(SIZES) or not set(servers) <= set(KNOWN_SERVERS):
        ap.error("unknown size or server")
    s = Settings(
        duration=args.duration or (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0),
        rounds=args.rounds or (1 if args.quick else 3),
        connections=args.connections,
        threads=args.threads,
        objects=args.objects,
        workers=args.workers,
        cpus=bench_cpus(args.cpus),
        verify_checksums=not args.no_verify,
        varnish_storage=args.varnish_storage,
        sizes=sizes,
        servers=servers,
        max_idle_busy=args.max_idle_busy,
        quiet_patience=args.quiet_patience,
        max_other=args.max_other,
        retries=args.retries,
    )
    print(
        f"hit throughput: {len(s.servers)} servers x {len(s.sizes)} sizes, {s.objects} objects "
        f"each, wrk -t{s.threads} -c{s.connections} -d{s.duration:g}s x {s.rounds} rounds, "
        f"servers and wrk pinned to CPUs {','.join(map(str, s.cpus))}",
        flush=True,
    )
    return run_and_report("hit_throughput", lambda: run(s, args.keep), report, args.json)


def report(result: dict[str, Any]) -> list[str]:
    moves = result["origin_requests_while_measuring"]
    return [
        format_summary(result["summary"]),
        "origin requests while measuring (must be 0): "
        + ", ".join(f"{k} {v}" for k, v in moves.items()),
        *verdict(result["summary"]),
    ]


if __name__ == "__main__":
    raise SystemExit(main())

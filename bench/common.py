"""Shared helpers of the benchmarks: processes, CPU accounting, the bench origin, tables, results.

Every server a benchmark starts is a :class:`Server`: started on 127.0.0.1 (optionally pinned to
a CPU set), its log in the run's work directory, and stopped by its own PID (SIGTERM, then
SIGKILL of the PIDs of its tree recorded beforehand), never by name. CPU time is read from
``/proc/PID/stat`` (utime + stime) of the server and all its descendants.

Config templates live in ``bench/configs/`` with ``@NAME@`` placeholders (nginx and VCL use
``$`` themselves), filled in by :func:`render`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bench" / "configs"
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


class BenchError(Exception):
    """A benchmark could not run (missing tool, server that will not start, bad answer)."""


# -- processes -------------------------------------------------------------------------------


def bench_cpus(count: int) -> tuple[int, ...]:
    """The first ``count`` CPUs this process may run on (all of them if there are fewer)."""
    return tuple(sorted(os.sched_getaffinity(0))[:count])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_tool(name: str) -> str | None:
    """``name`` on PATH or in /usr/sbin (Debian puts nginx and varnishd there)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) seconds of one process (all its threads) from /proc/PID/stat; (0, 0) if
    it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


@dataclass(frozen=True)
class CpuTicks:
    """Jiffies of a CPU set from /proc/stat: busy (all but idle and iowait), softirq, total."""

    busy: int
    softirq: int
    total: int

    def __sub__(self, other: CpuTicks) -> CpuTicks:
        return CpuTicks(
            self.busy - other.busy, self.softirq - other.softirq, self.total - other.total
        )


def cpu_ticks(cpus: Iterable[int]) -> CpuTicks:
    wanted = {f"cpu{c}" for c in cpus}
    busy = softirq = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in wanted:
            # user nice system idle iowait irq softirq steal
            ticks = [int(x) for x in parts[1:9]]
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
            softirq += ticks[5] + ticks[6]
    return CpuTicks(busy, softirq, total)


def wait_quiet(cpus: tuple[int, ...], max_busy: float, patience: float) -> float:
    """Wait (at most ``patience`` s) until ``cpus`` are busy less than ``max_busy`` (0..1) over
    half a second, e.g. while another job shares the machine. Returns the last busy fraction."""
    deadline = time.monotonic() + patience
    while True:
        t0 = cpu_ticks(cpus)
        time.sleep(0.5)
        d = cpu_ticks(cpus) - t0
        frac = d.busy / max(1, d.total)
        if frac <= max_busy or time.monotonic() >= deadline:
            return frac


@dataclass
class Server:
    """One started server process (and whatever it forks), stopped by PID."""

    name: str
    argv: list[str]
    log_path: Path
    cpus: tuple[int, ...] | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Server:
        cpus = self.cpus
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[int]:
        """The server's PID and those of all its descendants."""
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self.pid, *(k.pid for k in kids)]

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server and all its descendants."""
        times = [proc_cpu_times(p) for p in self.tree()]
        return sum(u for u, _ in times), sum(s for _, s in times)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers at all (any status), or raise with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0):
                    return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not answer {url} in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM; after ``timeout`` SIGKILL. Descendants left behind are killed too.

        Descendants are remembered as psutil handles before the signal, so a PID reused by an
        unrelated process meanwhile is never hit (psutil checks the creation time).
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for k in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                k.kill()


class ServerGroup:
    """Servers started for one benchmark; stopped in reverse order, whatever happens."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def add(self, server: Server) -> Server:
        self.servers.append(server.start())
        return server

    def stop_all(self) -> None:
        for s in reversed(self.servers):
            s.stop()
        self.servers.clear()

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# -- configs and servers -----------------------------------------------------------------------


def render(template: str, **values: object) -> str:
    """``bench/configs/{template}`` with every ``@NAME@`` replaced by ``values[NAME]``."""
    text = (CONFIGS / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    left = _PLACEHOLDER.search(code)
    if left is not None:
        raise BenchError(f"{template}: placeholder {left.group(0)} left unfilled")
    return text


def start_origin(group: ServerGroup, root: Path, workdir: Path) -> tuple[Server, str]:
    """The appliance test upstream serving ``root`` at /v/...; returns it and its base URL."""
    port = free_port()
    s = group.add(
        Server(
            "origin",
            [
                sys.executable,
                "-m",
                "tests.support.upstream",
                "--root",
                str(root),
                "--port",
                str(port),
            ],
            workdir / "origin.log",
        )
    )
    base = f"http://127.0.0.1:{port}"
    s.wait_http(base + "/healthz")
    return s, base


def appliance_server(
    workdir: Path,
    origin_port: int,
    workers: int,
    cpus: tuple[int, ...] | None,
    verify_checksums: bool = True,
    name: str = "appliance",
) -> tuple[Server, int]:
    """An appliance (supervisor + ``workers`` workers) config'd in ``workdir``; not started."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = workdir / "appliance.toml"
    cfg.write_text(
        render(
            "appliance.toml.in",
            PORT=port,
            ORIGIN_PORT=origin_port,
            WORKERS=workers,
            VERIFY="true" if verify_checksums else "false",
            DIR=workdir,
        )
    )
    argv = [sys.executable, "-m", "appliance.cli", "serve", "-c", str(cfg), "--shutdown-grace", "5"]
    return Server(name, argv, workdir / "appliance.log", cpus), port


def wait_appliance_ready(server: Server, port: int, workdir: Path, workers: int) -> None:
    server.wait_http(f"http://127.0.0.1:{port}/healthz")
    deadline = time.monotonic() + 30
    run = workdir / "run"
    while time.monotonic() < deadline:
        if all((run / f"worker-{i}.ready").exists() for i in range(workers)):
            return
        if not server.alive():
            break
        time.sleep(0.05)
    raise BenchError(f"appliance workers not ready:\n{server.log_tail()}")


def _prepare(workdir: Path, tool: str) -> tuple[str, int]:
    """Make ``workdir``; the reference server's executable and a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = find_tool(tool)
    if exe is None:
        raise BenchError(f"{tool} not found: run bash bench/install_refs.sh")
    return exe, free_port()


def nginx_server(
    workdir: Path, origin_port: int, workers: int, cpus: tuple[int, ...] | None
) -> tuple[Server, int]:
    exe, port = _prepare(workdir, "nginx")
    conf = workdir / "nginx.conf"
    conf.write_text(
        render(
            "nginx.conf.in",
            USER_LINE="user root;" if os.geteuid() == 0 else "",
            WORKERS=workers,
            DIR=workdir,
            PORT=port,
            ORIGIN_PORT=origin_port,
        )
    )
    argv = [exe, "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]
    return Server("nginx", argv, workdir / "nginx.log", cpus), port


def varnish_server(
    workdir: Path,
    origin_port: int,
    thread_pools: int,
    storage: str,
    cpus: tuple[int, ...] | None,
) -> tuple[Server, int]:
    exe, port = _prepare(workdir, "varnishd")
    vcl = workdir / "bench.vcl"
    vcl.write_text(render("varnish.vcl.in", ORIGIN_PORT=origin_port))
    argv = [
        exe,
        "-F",
        "-j",
        "none",
        "-n",
        str(workdir / "varnish"),
        "-a",
        f"127.0.0.1:{port}",
        "-T",
        "none",
        "-f",
        str(vcl),
        "-s",
        f"malloc,{storage}",
        "-p",
        f"thread_pools={thread_pools}",
    ]
    return Server("varnish", argv, workdir / "varnish.log", cpus), port


# -- the bench origin's control API (tests/support/upstream.py) --------------------------------


def origin_count(base: str, path: str | None = None) -> int:
    """Requests the origin got for ``path`` (all paths when None)."""
    url = base + "/_count"
    if path is not None:
        url += "?path=" + urllib.parse.quote(path, safe="")
    with urllib.request.urlopen(url, timeout=5) as r:
        data = json.loads(r.read())
    if path is not None:
        return int(data["count"])
    return sum(int(v) for v in data.values())


def origin_fault(base: str, path: str, mode: str | None, arg: object = None) -> None:
    """Set (or with ``mode=None`` reset all) faults of the bench origin."""
    if mode is None:
        url, body = base + "/_reset", {}
    else:
        url, body = base + "/_mode", {"path": path, "mode": mode, "arg": arg}
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], int]:
    """GET ``url``; (status, lower-cased headers, body length)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, len(body)
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, len(e.read())


# -- statistics and output -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks; nan for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(r, widths, strict=True))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tools = {
        "wrk": find_tool("wrk"),
        "nginx": find_tool("nginx"),
        "varnishd": find_tool("varnishd"),
    }
    return {
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _version([tools["wrk"], "-v"]) if tools["wrk"] else "not found",
        "nginx": _version([tools["nginx"], "-v"]) if tools["nginx"] else "not found",
        "varnish": _version([tools["varnishd"], "-V"]) if tools["varnishd"] else "not found",
    }


def run_and_report(
    name: str,
    run: Callable[[], dict[str, Any]],
    report: Callable[[dict[str, Any]], list[str]],
    path: Path | None,
) -> int:
    """A benchmark's ``main`` tail: run it, print ``report(result)``, write the JSON; exit code."""
    code = code_version()  # before starting: other people may commit while it runs
    try:
        result = {**run(), "code": code}
    except BenchError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    print()
    for line in report(result):
        print(line)
    written = write_results(name, result, path)
    shown = written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written
    print(f"results: {shown} (code {code})")
    return 0


def code_version() -> str:
    """The commit measured: short HEAD, "+dirty" when appliance/ or vodedge/ have changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "appliance", "vodedge"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def write_results(name: str, data: dict[str, Any], path: Path | None) -> Path:
    """Write ``data`` as JSON to ``path`` or ``bench/results/{name}-{timestamp}.json``."""
    if path is None:
        path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path

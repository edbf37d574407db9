"""Appliance metrics (Prometheus, multiprocess).

Workers are separate processes, so metrics use prometheus_client's multiprocess mode: the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before starting workers, and any worker answering
``/metrics`` aggregates every worker's files. The hot path never touches prometheus_client: it
bumps plain ints in :class:`HotCounters`, and a once-a-second task folds them into the real
metrics (a multiprocess ``inc`` costs a few microseconds; a dict bump costs ~50 ns).

Outcomes keep hit / miss / collapsed / error apart (a collapsed miss is not a hit).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import psutil
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

NS = "vodedge"

REQUESTS = Counter(
    f"{NS}_requests_total", "Object requests by outcome and status.", ["outcome", "status"]
)
RESPONSE_BYTES = Counter(f"{NS}_response_bytes_total", "Body bytes sent to clients.", ["outcome"])
UPSTREAM_REQUESTS = Counter(
    f"{NS}_upstream_requests_total", "Requests sent upstream, by result.", ["upstream", "result"]
)
UPSTREAM_SECONDS = Histogram(
    f"{NS}_upstream_fetch_seconds",
    "Time of a whole upstream fetch (request to last byte).",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPSTREAM_TTFB = Histogram(
    f"{NS}_upstream_first_byte_seconds",
    "Time from sending an upstream request to its response head.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FILL_BYTES = Counter(f"{NS}_fill_bytes_total", "Body bytes received from upstream.")
FILLS_STORED = Counter(f"{NS}_fills_total", "Completed fills by result.", ["result"])
FILLS_IN_FLIGHT = Gauge(
    f"{NS}_fills_in_flight", "Upstream fills in progress.", multiprocess_mode="livesum"
)
EVICTIONS = Counter(f"{NS}_evictions_total", "Objects evicted.", ["disk"])
EVICTED_BYTES = Counter(f"{NS}_evicted_bytes_total", "Bytes evicted.", ["disk"])
CHECKSUM_FAILURES = Counter(
    f"{NS}_checksum_failures_total", "Stored chunks whose checksum did not match.", ["disk"]
)
TIMEOUTS = Counter(f"{NS}_timeouts_total", "Timeouts by kind.", ["kind"])
DISK_CAPACITY = Gauge(
    f"{NS}_disk_capacity_bytes", "Byte budget of a disk.", ["disk"], multiprocess_mode="max"
)
DISK_OBJECT_BYTES = Gauge(
    f"{NS}_disk_object_bytes",
    "Bytes of objects stored on a disk (sum over owning workers).",
    ["disk"],
    multiprocess_mode="livesum",
)
DISK_OBJECTS = Gauge(
    f"{NS}_disk_objects",
    "Objects stored on a disk (sum over owning workers).",
    ["disk"],
    multiprocess_mode="livesum",
)
DISK_FILE_BYTES = Gauge(
    f"{NS}_disk_lmdb_bytes",
    "Bytes of the LMDB data file in use.",
    ["disk"],
    multiprocess_mode="max",
)
DISK_UP = Gauge(
    f"{NS}_disk_up",
    "1 when the disk is in service, 0 when failed.",
    ["disk"],
    multiprocess_mode="livemin",
)
CONNECTIONS = Gauge(
    f"{NS}_open_connections", "Open client connections.", multiprocess_mode="livesum"
)
RAM_CACHE_READS = Counter(
    f"{NS}_ram_cache_chunk_reads_total",
    "Chunks read for hits, by where they came from (ram = the RAM tier, disk = LMDB).",
    ["source"],
)
RAM_CACHE_BYTES = Gauge(
    f"{NS}_ram_cache_bytes", "Bytes held in the workers' RAM tiers.", multiprocess_mode="livesum"
)
RAM_CACHE_CAPACITY = Gauge(
    f"{NS}_ram_cache_capacity_bytes",
    "Budget of the workers' RAM tiers (storage.ram_cache_size).",
    multiprocess_mode="livesum",
)
STORE_ERRORS = Counter(
    f"{NS}_store_errors_total",
    "Store errors by kind: failed writes; readers_full = no LMDB reader slot for a hit.",
    ["kind"],
)


class HotCounters:
    """Plain counters bumped on the hot path, folded into Prometheus by :meth:`flush`."""

    __slots__ = ("bytes", "requests")

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.bytes: defaultdict[str, int] = defaultdict(int)

    def request(self, outcome: str, status: int, nbytes: int) -> None:
        self.requests[outcome, status] += 1
        if nbytes:
            self.bytes[outcome] += nbytes

    def flush(self) -> None:
        reqs, self.requests = self.requests, defaultdict(int)
        byts, self.bytes = self.bytes, defaultdict(int)
        for (outcome, status), n in reqs.items():
            REQUESTS.labels(outcome, str(status)).inc(n)
        for outcome, n in byts.items():
            RESPONSE_BYTES.labels(outcome).inc(n)


class SystemCollector:
    """Process-tree and system figures read with psutil at scrape time."""

    def __init__(self, root_pid: int) -> None:
        self._root_pid = root_pid

    def _procs(self) -> Iterator[psutil.Process]:
        try:
            root = psutil.Process(self._root_pid)
            yield root
            yield from root.children(recursive=True)
        except psutil.Error:
            return

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            f"{NS}_process_cpu_seconds", "CPU seconds of the appliance processes."
        )
        rss = GaugeMetricFamily(
            f"{NS}_process_resident_memory_bytes", "RSS of the appliance processes."
        )
        total_cpu = 0.0
        total_rss = 0
        nprocs = 0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total_cpu += t.user + t.system
                total_rss += p.memory_info().rss
                nprocs += 1
            except psutil.Error:
                continue
        cpu.add_metric([], total_cpu)
        rss.add_metric([], float(total_rss))
        yield cpu
        yield rss
        n = GaugeMetricFamily(f"{NS}_processes", "Appliance processes (supervisor + workers).")
        n.add_metric([], float(nprocs))
        yield n
        sys_cpu = GaugeMetricFamily(f"{NS}_system_cpu_utilization_ratio", "System CPU use 0-1.")
        sys_cpu.add_metric([], psutil.cpu_percent(interval=None) / 100.0)
        yield sys_cpu
        vm = psutil.virtual_memory()
        mem = GaugeMetricFamily(f"{NS}_system_memory_available_bytes", "Available memory.")
        mem.add_metric([], float(vm.available))
        yield mem
        la = GaugeMetricFamily(f"{NS}_system_load1", "1-minute load average.")
        la.add_metric([], os.getloadavg()[0])
        yield la
        net = psutil.net_io_counters()
        sent = CounterMetricFamily(f"{NS}_system_network_sent_bytes", "Bytes sent, all NICs.")
        sent.add_metric([], float(net.bytes_sent))
        yield sent
        recv = CounterMetricFamily(f"{NS}_system_network_received_bytes", "Bytes received.")
        recv.add_metric([], float(net.bytes_recv))
        yield recv


def render(root_pid: int) -> bytes:
    """Text exposition of all workers' metrics plus system figures."""
    system = CollectorRegistry()
    system.register(SystemCollector(root_pid))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY  # single process (tests)
    return generate_latest(registry) + generate_latest(system)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

"""Metrics the supervisor writes (same multiprocess directory as the workers' metrics).

Imported only after ``PROMETHEUS_MULTIPROC_DIR`` is set (see :mod:`appliance.cli`), so these
land in files that ``/metrics`` on either listener aggregates with the workers'.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from appliance.metrics import NS

START_TIME = Gauge(
    f"{NS}_start_time_seconds",
    "When the appliance daemon started (unix time); a change means a restart.",
    multiprocess_mode="livemax",
)
WORKERS_RUNNING = Gauge(
    f"{NS}_workers_running", "Worker processes running.", multiprocess_mode="livemax"
)
WORKER_RESTARTS = Counter(
    f"{NS}_worker_restarts_total", "Worker processes that exited and were started again."
)
DRAINING = Gauge(
    f"{NS}_draining",
    "1 while the appliance is drained by an operator.",
    multiprocess_mode="livemax",
)
RELOADS = Counter(f"{NS}_reloads_total", "Configuration reloads by result.", ["result"])
HEARTBEATS = Counter(f"{NS}_heartbeat_total", "Heartbeats sent, by result.", ["result"])
HEARTBEAT_LAST_SUCCESS = Gauge(
    f"{NS}_heartbeat_last_success_timestamp_seconds",
    "Unix time of the last heartbeat the control plane accepted.",
    multiprocess_mode="livemax",
)
PREFILL_BYTES = Counter(f"{NS}_prefill_bytes_total", "Bytes fetched by prefill jobs.")
PREFILL_FILES = Counter(
    f"{NS}_prefill_files_total", "Prefill files finished, by result.", ["result"]
)
PREFILL_JOBS_BY_STATE = Gauge(
    f"{NS}_prefill_jobs", "Prefill jobs by state.", ["state"], multiprocess_mode="livemax"
)


def set_prefill_jobs(states: Iterable[str]) -> None:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    for s in ("queued", "running", "waiting_window", "done", "cancelled"):
        PREFILL_JOBS_BY_STATE.labels(s).set(counts.get(s, 0))

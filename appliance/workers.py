"""The worker processes: start, watch, restart with back-off, stop.

Workers are fresh interpreters (``python -m appliance.worker``) that inherit their listening
sockets by file descriptor — one ``SO_REUSEPORT`` socket per worker and address, so the kernel
spreads connections evenly over the workers (:mod:`appliance.listen`) — and each opens its own
LMDB environments (LMDB handles must not cross ``fork``). A worker that exits is started again
after a back-off that doubles while it keeps dying young; its sockets are closed when it dies,
so no new connection waits for the replacement. ``poll`` is cheap and
called a few times a second from the supervisor's loop; nothing here blocks for long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance import supmetrics as sm
from appliance.listen import Listeners

log = logging.getLogger("appliance.supervisor")


@dataclass
class WorkerProc:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    """Consecutive early deaths (drives the back-off)."""
    restart_at: float | None = None
    ready_file: Path = field(default_factory=Path)


def restart_delay(consecutive_early_deaths: int) -> float:
    return min(10.0, 0.2 * 2.0 ** min(consecutive_early_deaths, 6))


class WorkerSet:
    def __init__(
        self,
        count: int,
        listeners: Listeners,
        run_dir: Path,
        snapshot: Path,
        shutdown_grace: float,
        metrics_dir: Path,
    ) -> None:
        self.listeners = listeners
        self.run_dir = run_dir
        self.snapshot = snapshot
        self.shutdown_grace = shutdown_grace
        self.metrics_dir = metrics_dir
        self.workers = [WorkerProc(i) for i in range(count)]
        self.total_restarts = 0

    def __len__(self) -> int:
        return len(self.workers)

    def spawn(self, w: WorkerProc) -> None:
        try:
            fds = self.listeners.fds_for(w.index)
        except OSError as e:
            self._retry_later(w, "cannot listen for a worker; retrying", e)
            return
        w.ready_file = self.run_dir / f"worker-{w.index}.ready"
        w.ready_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "appliance.worker",
            "--config",
            str(self.snapshot),
            "--index",
            str(w.index),
            "--workers",
            str(len(self.workers)),
            "--fds",
            ",".join(map(str, fds)),
            "--root-pid",
            str(os.getpid()),
            "--shutdown-grace",
            str(self.shutdown_grace),
            "--ready-file",
            str(w.ready_file),
        ]
        try:
            w.proc = subprocess.Popen(argv, pass_fds=fds)
        except OSError as e:  # EAGAIN/ENOMEM under memory pressure: try again later
            self._retry_later(w, "cannot start a worker; retrying", e)
            return
        w.started = time.monotonic()
        w.restart_at = None
        log.info("worker started", extra={"worker": w.index, "pid": w.proc.pid})

    def _retry_later(self, w: WorkerProc, what: str, error: OSError) -> None:
        """A start that failed before the process ran: back off as for an early death."""
        w.restarts += 1
        w.restart_at = time.monotonic() + restart_delay(w.restarts)
        log.error(what, extra={"worker": w.index, "error": str(error)})

    def start_all(self) -> None:
        for w in self.workers:
            self.spawn(w)

    def running(self) -> int:
        return sum(1 for w in self.workers if w.proc is not None and w.proc.poll() is None)

    def all_ready(self) -> bool:
        return all(
            w.proc is not None and w.proc.poll() is None and w.ready_file.exists()
            for w in self.workers
        )

    def poll(self) -> None:
        """Notice exited workers and start them again when their back-off has passed."""
        now = time.monotonic()
        for w in self.workers:
            if w.restart_at is not None:  # waiting out a back-off (or a failed start)
                if now >= w.restart_at:
                    self.spawn(w)
                continue
            if w.proc is None:
                continue
            code = w.proc.poll()
            if code is None:
                continue
            self._mark_dead(w.proc.pid)
            # The kernel would keep handing this slot new connections until a replacement
            # serves: close its sockets so the workers that serve take them now.
            self.listeners.release(w.index)
            w.restarts = w.restarts + 1 if now - w.started < 10 else 0
            delay = restart_delay(w.restarts)
            w.restart_at = now + delay
            self.total_restarts += 1
            sm.WORKER_RESTARTS.inc()
            log.error(
                "worker exited; restarting",
                extra={
                    "worker": w.index,
                    "code": code,
                    "delay_s": round(delay, 2),
                },
            )
        sm.WORKERS_RUNNING.set(self.running())

    def kill(self, index: int, reason: str) -> None:
        """SIGKILL a hung worker; ``poll`` starts it again."""
        w = self.workers[index]
        if w.proc is not None and w.proc.poll() is None:
            log.error("killing hung worker", extra={"worker": index, "reason": reason})
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()

    def _mark_dead(self, pid: int) -> None:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def stop(self, grace: float) -> None:
        """SIGTERM every worker, wait up to ``grace`` + 5 s, then SIGKILL (blocking)."""
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing", extra={"worker": w.index})
                w.proc.kill()
                w.proc.wait()

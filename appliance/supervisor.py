"""The supervisor: binds the public sockets once and keeps N worker processes running.

Workers are fresh interpreters (``python -m appliance.worker``) that inherit the listening
sockets by file descriptor, so the kernel spreads connections over them, and each opens its own
LMDB environments (LMDB handles must not cross ``fork``). The supervisor never opens LMDB. A
worker that dies is started again (with back-off); SIGTERM/SIGINT stop the workers gracefully
and the supervisor exits 0. It stays in the foreground and logs to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from appliance.config import ApplianceConfig

log = logging.getLogger("appliance.supervisor")


@dataclass
class WorkerProc:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    ready_file: Path = field(default_factory=Path)


def bind(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((host, port))
    s.listen(backlog)
    s.set_inheritable(True)
    return s


class Supervisor:
    def __init__(self, cfg: ApplianceConfig, config_path: Path, shutdown_grace: float = 30.0):
        self.cfg = cfg
        self.config_path = config_path
        self.shutdown_grace = shutdown_grace
        self.sockets: list[socket.socket] = []
        self.workers = [WorkerProc(i) for i in range(cfg.server.workers)]
        self._stop = False

    def _prepare_dirs(self) -> Path:
        run = self.cfg.run_dir
        run.mkdir(parents=True, exist_ok=True)
        mdir = run / "metrics"
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mdir)
        return mdir

    def _spawn(self, w: WorkerProc) -> None:
        fds = [s.fileno() for s in self.sockets]
        w.ready_file = self.cfg.run_dir / f"worker-{w.index}.ready"
        w.ready_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "appliance.worker",
            "--config",
            str(self.config_path),
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
        w.proc = subprocess.Popen(argv, pass_fds=fds)
        w.started = time.monotonic()
        log.info("worker started", extra={"worker": w.index, "pid": w.proc.pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop = True

    def all_ready(self) -> bool:
        return all(w.ready_file.exists() for w in self.workers)

    def run(self) -> int:
        mdir = self._prepare_dirs()
        for host, port in self.cfg.server.listen:
            self.sockets.append(bind(host, port))
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for w in self.workers:
            self._spawn(w)
        announced = False
        while not self._stop:
            time.sleep(0.1)
            if not announced and self.all_ready():
                announced = True
                log.info(
                    "appliance ready",
                    extra={"workers": len(self.workers), "listen": self.cfg.server.listen},
                )
            for w in self.workers:
                if w.proc is None or w.proc.poll() is None or self._stop:
                    continue
                code = w.proc.returncode
                self._mark_dead(mdir, w.proc.pid)
                lived = time.monotonic() - w.started
                w.restarts = w.restarts + 1 if lived < 10 else 0
                delay = min(10.0, 0.2 * (2 ** min(w.restarts, 6)))
                log.error(
                    "worker exited; restarting",
                    extra={"worker": w.index, "code": code, "delay_s": delay},
                )
                time.sleep(delay)
                self._spawn(w)
        return self._shutdown(mdir)

    def _mark_dead(self, mdir: Path, pid: int) -> None:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(mdir))  # type: ignore[no-untyped-call]

    def _shutdown(self, mdir: Path) -> int:
        log.info("stopping workers")
        for s in self.sockets:
            s.close()
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_grace + 5
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing", extra={"worker": w.index})
                w.proc.kill()
                w.proc.wait()
        log.info("stopped")
        return 0

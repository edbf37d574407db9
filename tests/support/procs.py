"""Real subprocesses for tests: start on a free loopback port, wait for health, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Proc:
    """A started daemon; ``stop()`` sends SIGTERM then SIGKILL after ``timeout``."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    """Extra environment variables for the process."""
    proc: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> Proc:
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env} if self.env else None
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_healthy(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[:4]} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if http_ok(url):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.argv[:4]} not healthy within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

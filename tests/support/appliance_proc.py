"""The appliance daemon (supervisor + workers) as a real subprocess, and the fault upstream."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support.procs import Proc, free_port, python_module

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class Upstream:
    base_url: str
    root: Path
    proc: Proc

    def _post(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()

    def fault(self, path: str, mode: str, arg: Any = None, once: bool = False) -> None:
        self._post("/_mode", {"path": path, "mode": mode, "arg": arg, "once": once})

    def reset(self) -> None:
        self._post("/_reset", {})

    def count(self, path: str) -> int:
        q = urllib.parse.quote(path, safe="")
        with urllib.request.urlopen(f"{self.base_url}/_count?path={q}", timeout=5) as r:
            return int(json.loads(r.read())["count"])

    def put(self, key: str, data: bytes) -> None:
        f = self.root / key.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)


@contextmanager
def run_upstream(root: Path, log_dir: Path) -> Iterator[Upstream]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    p = Proc(
        python_module("tests.support.upstream", "--root", str(root), "--port", str(port)),
        log_dir / f"upstream-{port}.log",
    ).start()
    try:
        p.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        yield Upstream(f"http://127.0.0.1:{port}", root, p)
    finally:
        p.stop()


def appliance_toml(
    var: Path,
    port: int,
    upstreams: list[str],
    workers: int = 2,
    disks: list[tuple[str, str]] | None = None,
    token_keys: dict[str, str] | None = None,
    extra: str = "",
    fill: str = "",
    server: str = "",
) -> str:
    disks = disks or [(str(var / "disk0"), "64MiB")]
    disk_tables = "".join(f'[[storage.disks]]\npath = "{p}"\nsize = "{s}"\n\n' for p, s in disks)
    keys = "".join(f'{k} = "{v}"\n' for k, v in (token_keys or {}).items())
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
workers = {workers}
{"" if "send_timeout" in server else "send_timeout = 10.0"}
{server}

[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[fill]
origins = {json.dumps(upstreams)}
connect_timeout = 1.0
first_byte_timeout = 3.0
idle_timeout = 2.0
negative_ttl = 1.0
{fill}

[storage]
verify_checksums = true

{disk_tables}
[tokens]
required = {"true" if token_keys else "false"}

[tokens.keys]
{keys}

[runtime]
run_dir = "{var / "run"}"

{extra}
"""


@dataclass
class Appliance:
    base_url: str
    port: int
    config: Path
    var: Path
    proc: Proc

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``, from /metrics."""
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    @property
    def admin_url(self) -> str:
        """The admin listener (bound to port 0 in tests; the daemon writes where it is)."""
        deadline = time.monotonic() + 10
        f = self.var / "run" / "admin.addr"
        while not f.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("admin.addr not written:\n" + self.proc.log_tail())
            time.sleep(0.05)
        return "http://" + f.read_text().strip()

    def admin(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = ADMIN_TOKEN,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """One admin API call: (status, parsed JSON body or text)."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.admin_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in ctype else raw.decode()


@contextmanager
def run_appliance(
    var: Path, upstreams: list[str], env: dict[str, str] | None = None, **kw: Any
) -> Iterator[Appliance]:
    var.mkdir(parents=True, exist_ok=True)
    port = kw.pop("port", None) or free_port()
    cfg = var / "appliance.toml"
    cfg.write_text(appliance_toml(var, port, upstreams, **kw))
    app = start_appliance(cfg, var, port, kw.get("workers", 2), env)
    try:
        yield app
    finally:
        app.proc.stop()


def start_appliance(
    cfg: Path, var: Path, port: int, workers: int, env: dict[str, str] | None = None
) -> Appliance:
    p = Proc(
        python_module("appliance.cli", "serve", "-c", str(cfg), "--shutdown-grace", "5"),
        var / f"appliance-{int(time.time() * 1000)}.log",
        env,
    ).start()
    base = f"http://127.0.0.1:{port}"
    p.wait_healthy(base + "/healthz")
    app = Appliance(base, port, cfg, var, p)
    # all workers up: each has written its ready file
    deadline = time.monotonic() + 20
    run = var / "run"
    while time.monotonic() < deadline:
        if all((run / f"worker-{i}.ready").exists() for i in range(workers)):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("workers not ready:\n" + p.log_tail())
    return app


def kill_tree(app: Appliance) -> None:
    """kill -9 the supervisor and every worker at once."""
    pids = [app.proc.pid, *app.worker_pids()]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    app.proc.proc.wait()

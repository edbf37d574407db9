"""Lifecycle: systemd notify, graceful SIGTERM, SIGHUP reload (good and broken configs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
import requests

from tests.support.appliance_proc import Appliance, Upstream, appliance_toml, run_appliance
from tests.support.procs import free_port
from vodedge.tokens import sign

MiB = 2**20


def test_sd_notify_ready_watchdog_and_stopping(module_tmp: Path, upstream: Upstream) -> None:
    sock_path = module_tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
    try:
        with run_appliance(module_tmp / "n1", [upstream.base_url], workers=2, env=env) as app:
            messages: list[str] = []
            while not any("READY=1" in msg for msg in messages):
                messages.append(sock.recv(4096).decode())
            # READY only once every worker listens: the public port answers right away
            assert requests.get(app.base_url + "/healthz", timeout=2).status_code == 200
            ready = next(msg for msg in messages if "READY=1" in msg)
            assert f"MAINPID={app.proc.pid}" in ready and "STATUS=serving on" in ready
            t0 = time.monotonic()
            pings = 0
            while pings < 4:
                if sock.recv(4096).decode() == "WATCHDOG=1":
                    pings += 1
            assert time.monotonic() - t0 < 2.0  # 4 pings at ~0.2 s intervals
            app.proc.proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in sock.recv(4096).decode():
                pass
            assert app.proc.proc.wait(20) == 0
    finally:
        sock.close()


def test_sigterm_finishes_an_in_flight_20mb_response(module_tmp: Path, upstream: Upstream) -> None:
    key = "/v/lc2/r/big.m4s"
    body = os.urandom(20 * MiB)
    upstream.put(key, body)
    with run_appliance(module_tmp / "n2", [upstream.base_url], workers=2) as app:
        assert requests.get(app.base_url + key, timeout=30).content == body  # now stored
        s = socket.create_connection(("127.0.0.1", app.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET {key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = bytearray(s.recv(65536))
        app.proc.proc.send_signal(signal.SIGTERM)
        # read slowly (~10 MB/s) while the appliance shuts down
        while True:
            chunk = s.recv(256 * 1024)
            if not chunk:
                break
            got += chunk
            time.sleep(0.02)
        s.close()
        head, _, received = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert received == body
        assert app.proc.proc.wait(20) == 0
        # and it no longer accepts connections
        try:
            socket.create_connection(("127.0.0.1", app.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        assert refused


def test_sighup_applies_live_changes_and_rejects_a_broken_file(
    module_tmp: Path, upstream: Upstream
) -> None:
    var = module_tmp / "n3"
    key = "/v/lc3/r/seg-00001.m4s"
    upstream.put(key, b"x" * 1000)
    with run_appliance(var, [upstream.base_url], workers=2) as app:
        assert requests.get(app.base_url + key, timeout=10).status_code == 200
        digest = app.admin("GET", "/admin/v1/status")[1]["config_digest"]
        # 1. a good change: tokens become required, and (restart-only) another port is asked for
        secret = "s3cret-key-for-tests-0001"
        good = appliance_toml(
            var, free_port(), [upstream.base_url], workers=2, token_keys={"k1": secret}
        )
        app.config.write_text(good)
        os.kill(app.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while requests.get(app.base_url + key, timeout=5).status_code != 403:
            assert time.monotonic() < deadline, app.proc.log_tail()
            time.sleep(0.1)
        for _ in range(4):  # both workers took it
            assert requests.get(app.base_url + key, timeout=5).status_code == 403
        token = sign("k1", secret.encode(), "lc3", int(time.time()) + 600)
        assert requests.get(f"{app.base_url}/t/{token}{key}", timeout=5).status_code == 200
        new_digest = app.admin("GET", "/admin/v1/status")[1]["config_digest"]
        assert new_digest != digest
        log = app.proc.log_tail(20000)
        assert "config reloaded" in log and "tokens.required" in log
        assert "need a restart" in log and "server.listen" in log  # still on the old port
        # 2. a broken file: rejected, the running config stays, even for a restarted worker
        app.config.write_text("[server\nthis is not toml")
        os.kill(app.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while app.metric("vodedge_reloads_total", result="rejected") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "reload rejected" in app.proc.log_tail(20000)
        os.kill(app.worker_pids()[0], signal.SIGKILL)
        time.sleep(1.5)  # restarted from the running config, not the broken file
        for _ in range(6):
            assert requests.get(f"{app.base_url}/t/{token}{key}", timeout=5).status_code == 200
            assert requests.get(app.base_url + key, timeout=5).status_code == 403
        assert app.admin("GET", "/admin/v1/status")[1]["config_digest"] == new_digest


def _fresh_connections_all_served(app: Appliance, key: str, body: bytes) -> None:
    for i in range(30):  # a fresh connection per request
        try:
            r = requests.get(app.base_url + key, headers={"Connection": "close"}, timeout=3)
        except requests.RequestException as e:
            raise AssertionError(f"request {i}: {e}\n{app.proc.log_tail(3000)}") from e
        assert r.status_code == 200 and r.content == body


def test_while_a_worker_is_down_new_connections_go_to_the_others(
    module_tmp: Path, upstream: Upstream
) -> None:
    """A worker that keeps dying (its replacement cannot start) must not take a share of new
    connections: each would wait on its socket until a replacement serves, i.e. here never."""
    key = "/v/lc4/r/seg-00001.m4s"
    body = os.urandom(64 * 1024)
    upstream.put(key, body)
    with run_appliance(module_tmp / "lc4", [upstream.base_url], workers=2) as app:
        assert requests.get(app.base_url + key, timeout=10).content == body
        snapshot = app.var / "run" / "config.json"
        good = snapshot.read_text()
        snapshot.write_text("{ not json")  # every replacement now dies at start-up
        try:
            os.kill(app.worker_pids()[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while "worker exited" not in app.proc.log_path.read_text():
                assert time.monotonic() < deadline, "the supervisor did not notice"
                time.sleep(0.05)
            _fresh_connections_all_served(app, key, body)
            deadline = time.monotonic() + 20
            while app.metric("vodedge_worker_restarts_total") < 3:  # replacements died too
                assert time.monotonic() < deadline, "the slot did not crash-loop"
                time.sleep(0.1)
            _fresh_connections_all_served(app, key, body)
        finally:
            snapshot.write_text(good)
        deadline = time.monotonic() + 30  # the slot comes back and takes connections again
        ready = [app.var / "run" / f"worker-{i}.ready" for i in range(2)]
        while not all(f.exists() for f in ready):  # written once a worker serves
            assert time.monotonic() < deadline, "the worker never came back"
            time.sleep(0.2)
        mark = len(app.proc.log_path.read_text())
        for _ in range(40):
            r = requests.get(app.base_url + key, headers={"Connection": "close"}, timeout=5)
            assert r.status_code == 200
        deadline = time.monotonic() + 10  # access lines are written once a second
        while True:
            lines = [
                json.loads(line)
                for line in app.proc.log_path.read_text()[mark:].splitlines()
                if '"type":"access"' in line and key in line
            ]
            if len(lines) >= 40:
                break
            assert time.monotonic() < deadline, f"{len(lines)} access lines of 40"
            time.sleep(0.2)
        assert {line["w"] for line in lines} == {0, 1}  # P(all 40 on one worker) ~ 2e-12


def test_a_worker_that_missed_a_switch_is_brought_back_in_line(
    module_tmp: Path, upstream: Upstream
) -> None:
    """A worker can miss a reload or a drain call (it was starting, the call timed out): the
    supervisor's stats poll sees its config digest or drain state differ and tells it again."""
    with run_appliance(module_tmp / "lc5", [upstream.base_url], workers=2) as app:
        sock = str(app.var / "run" / "worker-1.sock")

        async def ctl(method: str, path: str, body: object = None) -> dict[str, object]:
            connector = aiohttp.UnixConnector(path=sock)
            async with (
                aiohttp.ClientSession(connector=connector) as s,
                s.request(method, "http://worker" + path, json=body) as r,
            ):
                assert r.status == 200
                got: dict[str, object] = await r.json()
                return got

        asyncio.run(ctl("POST", "/ctl/drain", {"draining": True}))  # behind the supervisor's back
        assert asyncio.run(ctl("GET", "/ctl/stats"))["draining"] is True
        deadline = time.monotonic() + 15  # the poll runs every 5 s
        while asyncio.run(ctl("GET", "/ctl/stats"))["draining"] is not False:
            assert time.monotonic() < deadline, "the worker was not brought back in line"
            time.sleep(0.2)

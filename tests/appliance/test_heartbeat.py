"""Heartbeat to a real loopback control-plane receiver: body contract, config, outage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from appliance.heartbeat import MAX_BACKOFF, merge_counts, next_delay
from tests.support.appliance_proc import Upstream, run_appliance
from tests.support.procs import free_port
from vodedge import __version__
from vodedge.tokens import sign


@dataclass
class Receiver:
    url: str
    beats: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None


@contextmanager
def receiver(port: int) -> Iterator[Receiver]:
    rec = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(n))
            rec.beats.append((self.path, dict(self.headers), body))
            out = json.dumps(rec.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    rec.server = srv
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


def test_backoff_and_bounded_counts() -> None:
    assert next_delay(5.0, 0, 0.5) == 5.0
    assert 9.0 <= next_delay(5.0, 1, 0.0) <= 11.0
    assert next_delay(5.0, 30, 1.0) <= MAX_BACKOFF * 1.1
    pending = {"a": 1}
    assert merge_counts(pending, {"a": 2, "b": 3}) == 0
    assert pending == {"a": 3, "b": 3}


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_heartbeat_contract_config_and_outage(module_tmp: Path, upstream: Upstream) -> None:
    port = free_port()
    keys = [f"/v/hbtitle/r/seg-{i:05d}.m4s" for i in range(3)]
    for k in keys:
        upstream.put(k, b"z" * 10_000)
    file_secret = "file-secret-0123456789"
    cp_secret = "control-plane-secret-0123"
    extra = f"""
[control_plane]
url = "http://127.0.0.1:{port}"
appliance_id = "isp1-fra-01"
credential = "appliance-credential"
interval = 0.3
timeout = 1.0
public_url = "https://a1.isp.example"
site = "fra"
"""
    with (
        receiver(port) as rec,
        run_appliance(
            module_tmp / "h1",
            [upstream.base_url],
            workers=2,
            token_keys={"k1": file_secret},
            extra=extra,
        ) as app,
    ):
        tok = sign("k1", file_secret.encode(), "hbtitle", int(time.time()) + 600)
        for k in keys:
            assert requests.get(f"{app.base_url}/t/{tok}{k}", timeout=10).status_code == 200
        requests.get(f"{app.base_url}/t/{tok}{keys[0]}", timeout=10)  # 4 requests in all
        wait_for(lambda: sum(b[2]["requests"].get("hbtitle", 0) for b in rec.beats) >= 4)
        wait_for(lambda: rec.beats[-1][2]["contents"].get("hbtitle", {}).get("files") == 3)
        # Disk figures come from the workers' stats, polled every 5 s: they may lag the contents.
        wait_for(lambda: rec.beats[-1][2]["disks"][0]["used_bytes"] >= 30_000)
        path, headers, beat = rec.beats[-1]
        assert path == "/api/v1/appliances/isp1-fra-01/heartbeat"
        assert headers["Authorization"] == "Bearer appliance-credential"
        assert beat["appliance_id"] == "isp1-fra-01" and beat["state"] == "serving"
        assert beat["public_url"] == "https://a1.isp.example" and beat["site"] == "fra"
        assert beat["version"] == __version__
        (disk,) = beat["disks"]
        assert disk["capacity_bytes"] == 64 * 2**20 and disk["used_bytes"] >= 30_000
        assert disk["healthy"] is True and disk["objects"] >= 3
        assert set(beat["load"]) == {"egress_bytes_per_s", "open_connections", "cpu_ratio"}
        assert beat["contents"]["hbtitle"] == {"bytes": 30_000, "files": 3}
        assert sum(b[2]["requests"].get("hbtitle", 0) for b in rec.beats) == 4  # none twice
        seqs = [b[2]["seq"] for b in rec.beats]
        assert seqs == sorted(seqs)

        # the control plane rotates in a new key and sets a fill window: applied live
        rec.answer = {"config": {"token_keys": {"k2": cp_secret}, "fill_window": "02:00-08:00"}}
        tok2 = sign("k2", cp_secret.encode(), "hbtitle", int(time.time()) + 600)
        wait_for(
            lambda: all(
                requests.get(f"{app.base_url}/t/{tok2}{keys[1]}", timeout=5).status_code == 200
                for _ in range(4)
            )
        )
        assert requests.get(f"{app.base_url}/t/{tok}{keys[1]}", timeout=5).status_code == 200
        rec.answer = {}

        # control plane down: serving goes on, beats fail and back off
        assert rec.server is not None
        rec.server.shutdown()
        rec.server.server_close()
        time.sleep(2.5)
        for k in keys:
            assert requests.get(f"{app.base_url}/t/{tok2}{k}", timeout=5).status_code == 200
        failed = app.metric("vodedge_heartbeat_total", result="error")
        assert 1 <= failed <= 5  # 0.3 s interval doubling: a handful of tries in 2.5 s
        _, st = app.admin("GET", "/admin/v1/status")
        assert st["control_plane"]["consecutive_failures"] >= 1
        assert st["state"] == "serving"

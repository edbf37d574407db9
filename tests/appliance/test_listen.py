"""Listening sockets: one SO_REUSEPORT socket per worker, a port in use refused plainly."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.supervisor import listen_sockets
from tests.support.appliance_proc import appliance_toml
from tests.support.procs import REPO_ROOT


def test_each_worker_gets_its_own_socket_and_the_kernel_spreads_connections() -> None:
    sockets, per_worker = listen_sockets([("127.0.0.1", 0)], 3)
    try:
        assert len(sockets) == 3 and [len(f) for f in per_worker] == [1, 1, 1]
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        port = ports.pop()
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        accepted = []
        for s in sockets:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    c, _ = s.accept()
                except BlockingIOError:
                    break
                c.close()
                n += 1
            accepted.append(n)
        for c in clients:
            c.close()
        assert sum(accepted) == 60
        assert min(accepted) > 0, accepted  # all three got some (P(fail) ~ 1e-10)
    finally:
        for s in sockets:
            s.close()


def test_a_port_in_use_is_refused_not_shared() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even one that allows it
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            listen_sockets([("127.0.0.1", port)], 2)


def test_serve_on_a_busy_port_exits_nonzero_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        cfg = tmp_path / "appliance.toml"
        cfg.write_text(appliance_toml(tmp_path, port, ["http://127.0.0.1:9"]))
        r = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "serve", "-c", str(cfg)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "cannot listen" in out and f"127.0.0.1:{port}" in out, out

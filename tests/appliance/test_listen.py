"""Listening sockets: one SO_REUSEPORT socket per worker, a port in use refused plainly, a dead
worker's share of new connections going to the others."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.listen import Listeners
from tests.support.appliance_proc import appliance_toml
from tests.support.procs import REPO_ROOT


def _accept_all(sockets: list[socket.socket]) -> list[int]:
    """Connections waiting on each socket (accepted and closed)."""
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
    return accepted


def _connect(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def _listening(listeners: Listeners, slots: range) -> list[socket.socket]:
    """The slots' sockets, listening as their workers make them when they start serving."""
    out = [s for slot in slots for s in listeners.sockets(slot)]
    for s in out:
        s.listen(128)
    return out


def test_each_worker_gets_its_own_socket_and_the_kernel_spreads_connections() -> None:
    listeners = Listeners([("127.0.0.1", 0)], 3)
    listeners.open()
    try:
        sockets = _listening(listeners, range(3))
        assert len(sockets) == 3 and [len(listeners.fds_for(i)) for i in range(3)] == [1, 1, 1]
        ports = {s.getsockname()[1] for s in sockets}
        assert ports == {listeners.addresses[0][1]}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        clients = _connect(ports.pop(), 60)
        accepted = _accept_all(sockets)
        for c in clients:
            c.close()
        assert sum(accepted) == 60
        assert min(accepted) > 0, accepted  # all three got some (P(fail) ~ 1e-10)
    finally:
        listeners.close()


def test_a_released_slot_gets_no_new_connections_and_rebinds_for_its_replacement() -> None:
    listeners = Listeners([("127.0.0.1", 0)], 2)
    listeners.open()
    port = listeners.addresses[0][1]
    try:
        (live,) = _listening(listeners, range(1, 2))  # worker 1 serves; worker 0 is starting
        clients = _connect(port, 20)
        assert _accept_all([live]) == [20]  # a worker that does not serve yet gets none
        for c in clients:
            c.close()
        _listening(listeners, range(1))
        listeners.release(0)  # worker 0 served, then died; worker 1 still runs
        assert listeners.sockets(0) == []
        clients = _connect(port, 40)
        assert _accept_all([live]) == [40]  # every one went to the live worker
        for c in clients:
            c.close()
        new_fds = listeners.fds_for(0)  # the replacement's fresh socket, same address
        (fresh,) = listeners.sockets(0)
        assert new_fds == [fresh.fileno()] and fresh.getsockname()[1] == port
        clients = _connect(port, 20)
        assert _accept_all([live]) == [20]  # still none for it while it starts
        for c in clients:
            c.close()
        fresh.listen(128)  # it serves: back in the group
        clients = _connect(port, 60)
        assert min(_accept_all([fresh, live])) > 0
        for c in clients:
            c.close()
    finally:
        listeners.close()


def test_a_port_in_use_is_refused_not_shared() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even one that allows it
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        listeners = Listeners([("127.0.0.1", port)], 2)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            listeners.open()
        assert listeners.sockets(0) == listeners.sockets(1) == []


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

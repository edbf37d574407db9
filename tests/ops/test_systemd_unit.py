"""The systemd unit: systemd accepts it, and it agrees with the daemon it runs."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import tomllib
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest

from appliance.config import ServerConfig
from tests.ops.tools import FIRMWARE, UNIT, appliance_bin, install_ok, run, tool
from tests.ops.units import allowed_syscalls, parse_unit, sandboxed, seccomp_python, seconds
from tests.support.appliance_proc import Upstream, appliance_toml
from tests.support.procs import Proc, free_port

BIN = appliance_bin()
# What systemd prints about a unit it does not fully accept.
BAD_OUTPUT = re.compile(r"unknown|failed|invalid|ignoring|not executable|bad ", re.IGNORECASE)


UNIT_KEYS = parse_unit(UNIT.read_text())


def one(key: str) -> str:
    [value] = UNIT_KEYS[key]
    return value


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit and its drop-in as install.sh writes them (ExecStart = this venv's binary)."""
    root = tmp_path_factory.mktemp("root")
    install_ok(root, "--bin", BIN, "--disk", "/srv/disk0")
    return root / "etc/systemd/system"


def analyze_verify(unit_dir: Path) -> tuple[int, list[str]]:
    """``systemd-analyze verify`` on the installed unit with its drop-ins."""
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}  # ":" keeps the system paths
    r = run([tool("systemd-analyze"), "verify", str(unit_dir / UNIT.name)], env=env)
    return r.returncode, [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]


def test_systemd_analyze_verify_accepts_the_installed_unit(unit_dir: Path) -> None:
    rc, lines = analyze_verify(unit_dir)
    assert rc == 0 and not [ln for ln in lines if BAD_OUTPUT.search(ln)], lines


def test_systemd_analyze_verify_reports_mistakes_here(unit_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: this systemd reports a bad key and a bad value."""
    bad = tmp_path / "system"
    (bad / f"{UNIT.name}.d").mkdir(parents=True)
    (bad / UNIT.name).write_text(
        (unit_dir / UNIT.name).read_text() + "\n[Service]\nWatchdogSecs=5\n"
    )
    (bad / f"{UNIT.name}.d" / "10-disks.conf").write_text("[Service]\nProtectSystem=sometimes\n")
    _, lines = analyze_verify(bad)
    flagged = "\n".join(ln for ln in lines if BAD_OUTPUT.search(ln))
    assert "WatchdogSecs" in flagged and "sometimes" in flagged, lines


def test_security_exposure_stays_low(unit_dir: Path) -> None:
    r = run([tool("systemd-analyze"), "security", "--offline=yes", str(unit_dir / UNIT.name)])
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_stop_timeout_leaves_room_for_the_graceful_shutdown() -> None:
    # KillMode=mixed: SIGTERM to the supervisor, SIGKILL to everything at TimeoutStopSec.
    assert one("Service.KillMode") == "mixed"
    [default] = [f.default for f in fields(ServerConfig) if f.name == "shutdown_timeout"]
    assert isinstance(default, float)
    assert seconds(one("Service.TimeoutStopSec")) >= default + 10


def test_exit_status_2_is_a_config_error_and_not_restarted(tmp_path: Path) -> None:
    assert one("Service.RestartPreventExitStatus") == "2"
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\nlevel = "loud"\n')
    for cmd in ("check-config", "serve"):
        r = run([BIN, cmd, "-c", str(bad)])
        assert r.returncode == 2 and "config error" in r.stderr, r.stderr


def test_exec_start_is_a_serve_command_the_cli_accepts(tmp_path: Path) -> None:
    argv = one("Service.ExecStart").split()
    assert argv[1:] == ["serve", "-c", "/etc/vodedge/appliance.toml"]
    # the same arguments reach the config loader (a usage error would say "usage:")
    r = run([BIN, *argv[1:3], str(tmp_path / "absent.toml")])
    assert r.returncode == 2 and "config error" in r.stderr and "usage:" not in r.stderr


def test_default_disks_are_writable_and_directories_match_the_config(unit_dir: Path) -> None:
    writable = [p.lstrip("-") for v in UNIT_KEYS["Service.ReadWritePaths"] for p in v.split()]
    for disk in tomllib.loads((FIRMWARE / "appliance.toml").read_text())["storage"]["disks"]:
        assert any(Path(disk["path"]).is_relative_to(w) for w in writable), disk["path"]
    installed = tomllib.loads((unit_dir.parents[1] / "vodedge/appliance.toml").read_text())
    assert installed["runtime"]["run_dir"] == "/run/" + one("Service.RuntimeDirectory")
    assert installed["runtime"]["state_dir"] == "/var/lib/" + one("Service.StateDirectory")
    sysusers = (unit_dir.parents[2] / "usr/lib/sysusers.d/vodedge.conf").read_text()
    assert f"u {one('Service.User')} " in sysusers and one("Service.Group") == one("Service.User")


def test_ambient_capabilities_are_within_the_bounding_set() -> None:
    # systemd drops an ambient capability that the bounding set does not hold
    bounding = set(one("Service.CapabilityBoundingSet").split())
    assert set(one("Service.AmbientCapabilities").split()) <= bounding
    assert bounding <= {"CAP_NET_BIND_SERVICE"}


def test_write_execute_memory_is_refused_in_the_sandbox() -> None:
    probe = (
        "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    )
    r = run(sandboxed(sys.executable, "-c", probe))
    assert r.returncode == 1 and "PermissionError" in r.stderr


def test_system_calls_outside_the_filter_kill_the_process() -> None:
    """The filter the daemon test builds does confine: syslog(2) is outside @system-service."""
    allowed = unit_syscalls()
    assert "syslog" not in allowed and "mount" not in allowed and "read" in allowed
    env = {**os.environ, "VODEDGE_TEST_SYSCALLS": ",".join(sorted(allowed))}
    python = seccomp_python()
    ok = run(sandboxed(sys.executable, "-c", "print('ok')", python=python), env=env)
    assert ok.returncode == 0 and ok.stdout == "ok\n", ok.stderr
    # klogctl(SYSLOG_ACTION_SIZE_BUFFER): a harmless read of the kernel log's size
    probe = "import ctypes; ctypes.CDLL(None).klogctl(10, None, 0)"
    r = run(sandboxed(sys.executable, "-c", probe, python=python), env=env)
    assert r.returncode == -signal.SIGSYS


def unit_syscalls() -> set[str]:
    return allowed_syscalls(UNIT_KEYS)


def metrics(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        body: bytes = r.read()
        return body.decode()


@pytest.mark.parametrize("syscall_filter", [False, True], ids=["mdwe", "mdwe+syscall-filter"])
def test_daemon_serves_in_the_units_sandbox(
    upstream: Upstream, tmp_path: Path, syscall_filter: bool
) -> None:
    """MemoryDenyWriteExecute=yes and SystemCallFilter= are safe: the daemon fills, stores,
    serves, reports and stops in that sandbox, and no worker dies."""
    assert one("Service.MemoryDenyWriteExecute") == "yes"
    env = dict(os.environ)
    python = sys.executable
    if syscall_filter:
        python = seccomp_python()
        env["VODEDGE_TEST_SYSCALLS"] = ",".join(sorted(unit_syscalls()))
    port, admin_port = free_port(), free_port()
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(
        appliance_toml(tmp_path, port, [upstream.base_url], workers=2).replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{admin_port}"'
        )
    )
    upstream.put("/v/sandbox/h264-360p/seg-00001.m4s", os.urandom(3 * 2**20))
    argv = sandboxed(BIN, "serve", "-c", str(cfg), python=python)
    proc = Proc(argv, tmp_path / "daemon.log", env).start()
    try:
        proc.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v/sandbox/h264-360p/seg-00001.m4s"
        statuses: list[str] = []
        deadline = time.monotonic() + 10
        while not statuses or not statuses[-1].endswith("; hit"):
            assert time.monotonic() < deadline, statuses
            if statuses:
                time.sleep(0.1)  # the fill commits to LMDB after its waiters got their bytes
            with urllib.request.urlopen(url, timeout=10) as r:
                assert len(r.read()) == 3 * 2**20
                statuses.append(r.headers["Cache-Status"])
        assert statuses[0] == "vodedge; fwd=miss; stored", statuses
        # counters are folded into /metrics once a second
        while 'vodedge_requests_total{outcome="hit"' not in (text := metrics(admin_port)):
            assert time.monotonic() < deadline + 5
            time.sleep(0.2)
        assert re.search(r"^vodedge_worker_restarts_total 0\.0$", text, re.MULTILINE), text
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log_tail()

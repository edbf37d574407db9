"""The origin's systemd units (vodedge-origin.service, vodedge-origin-worker@.service): systemd
accepts them, they agree with the daemons they run and with firmware-config/origin.toml, and
serve and a worker do their work in the sandbox the units ask for."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from origin import config as origin_config
from origin.config import PipelineConfig
from origin.media.tools import find_tools
from origin.serve import SHUTDOWN_TIMEOUT
from tests.ops.tools import (
    FIRMWARE,
    REPO,
    metric_names,
    origin_exported_metric_names,
    promtool_check_exprs,
    run,
    tool,
)
from tests.ops.units import allowed_syscalls, parse_unit, sandboxed, seccomp_python, seconds
from tests.origin.pipeline.conftest import make_origin, make_title_clip
from tests.support.origin_proc import write_config, write_object
from tests.support.procs import Proc, free_port

SERVE = REPO / "systemd" / "vodedge-origin.service"
WORKER = REPO / "systemd" / "vodedge-origin-worker@.service"
UNITS = (SERVE, WORKER)
CONFIG = FIRMWARE / "origin.toml"
INSTALLED_BIN = "/opt/vodedge/bin/vodedge-origin"
INSTALLED_CONFIG = "/etc/vodedge/origin.toml"
BIN = str(Path(sys.executable).parent / "vodedge-origin")
BAD_OUTPUT = re.compile(r"unknown|failed|invalid|ignoring|not executable|bad ", re.IGNORECASE)

KEYS = {unit: parse_unit(unit.read_text()) for unit in UNITS}


def one(unit: Path, key: str) -> str:
    [value] = KEYS[unit][key]
    return value


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both units with ExecStart's executable replaced by this venv's (verify checks it)."""
    where = tmp_path_factory.mktemp("system")
    for unit in UNITS:
        (where / unit.name).write_text(unit.read_text().replace(INSTALLED_BIN, BIN))
    return where


def analyze(unit_dir: Path, *args: str) -> tuple[int, list[str]]:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}  # ":" keeps the system paths
    r = run([tool("systemd-analyze"), *args], env=env)
    return r.returncode, [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]


@pytest.mark.parametrize("name", ["vodedge-origin.service", "vodedge-origin-worker@3.service"])
def test_systemd_analyze_verify_accepts_the_units(unit_dir: Path, name: str) -> None:
    rc, lines = analyze(unit_dir, "verify", name)
    assert rc == 0 and not [ln for ln in lines if BAD_OUTPUT.search(ln)], lines


def test_verify_reports_a_worker_instance_that_is_not_a_cpu(unit_dir: Path) -> None:
    _, lines = analyze(unit_dir, "verify", "vodedge-origin-worker@x.service")
    assert any("CPU affinity" in ln and BAD_OUTPUT.search(ln) for ln in lines), lines


@pytest.mark.parametrize("name", ["vodedge-origin.service", "vodedge-origin-worker@3.service"])
def test_security_exposure_stays_low(unit_dir: Path, name: str) -> None:
    _, lines = analyze(unit_dir, "security", "--offline=yes", name)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", "\n".join(lines))
    assert m, lines
    assert float(m.group(1)) <= 2.0


def test_serve_exec_start_is_a_command_the_cli_accepts(tmp_path: Path) -> None:
    argv = one(SERVE, "Service.ExecStart").split()
    assert argv == [INSTALLED_BIN, "serve", "-c", INSTALLED_CONFIG]
    r = run([BIN, "serve", "-c", str(tmp_path / "absent.toml")])
    assert r.returncode == 2 and "not found" in r.stderr and "usage:" not in r.stderr


def worker_command(instance: str) -> tuple[list[str], dict[str, str]]:
    """ExecStart= of worker ``instance`` as systemd would run it: the specifier and ``$$``
    replaced, split into words; and the Environment= it gets."""
    line = one(WORKER, "Service.ExecStart").replace("%i", instance).replace("$$", "$")
    env = dict(w.split("=", 1) for w in shlex.split(one(WORKER, "Service.Environment")))
    return shlex.split(line), env


def test_a_worker_gets_its_cpus_metrics_port(tmp_path: Path) -> None:
    assert one(WORKER, "Service.CPUAffinity") == "%i"
    argv, env = worker_command("3")
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    printer = tmp_path / "print-args"
    printer.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    printer.chmod(0o755)
    r = subprocess.run(
        [*argv[:2], argv[2].replace(INSTALLED_BIN, str(printer))],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 0, r.stderr
    expected = ["worker", "-c", INSTALLED_CONFIG, "--metrics-listen", "127.0.0.1:9213"]
    assert r.stdout.splitlines() == expected
    # ... which the real command line accepts (an absent config is the error, not the usage)
    script = argv[2].replace(INSTALLED_BIN, BIN).replace(INSTALLED_CONFIG, str(tmp_path / "no"))
    real = subprocess.run([*argv[:2], script], env={**os.environ, **env}, capture_output=True)
    assert real.returncode == 2 and b"not found" in real.stderr and b"usage:" not in real.stderr


@pytest.mark.parametrize("instance", ["x", "1x", "", "0;reboot"])
def test_a_worker_instance_that_is_not_a_cpu_number_is_refused(instance: str) -> None:
    argv, env = worker_command(instance)
    r = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    assert r.returncode == 2 and "must be a CPU number" in r.stderr, r.stderr
    assert one(WORKER, "Service.RestartPreventExitStatus") == "2"


def test_stop_timeouts_leave_room_for_the_graceful_shutdowns() -> None:
    cfg = origin_config.load(CONFIG)
    assert seconds(one(SERVE, "Service.TimeoutStopSec")) >= SHUTDOWN_TIMEOUT + 10
    grace = max(cfg.pipeline.shutdown_grace_s, PipelineConfig().shutdown_grace_s)
    assert seconds(one(WORKER, "Service.TimeoutStopSec")) >= grace + 10
    # SIGTERM to the main process only: the worker's running encodes get their grace period
    assert one(SERVE, "Service.KillMode") == one(WORKER, "Service.KillMode") == "mixed"


def test_the_config_s_directories_are_writable_and_shared() -> None:
    cfg = origin_config.load(CONFIG)
    state = one(SERVE, "Service.StateDirectory").split()
    assert state == one(WORKER, "Service.StateDirectory").split()
    assert one(SERVE, "Service.User") == one(WORKER, "Service.User") == "vodedge-origin"
    writable = [Path("/var/lib", d) for d in state]
    for path in (
        cfg.media.root,
        cfg.media.sources,
        cfg.api.upload_dir,
        cfg.pipeline.work_dir,
        cfg.catalog.path.parent,
    ):
        assert path in writable, path  # created by systemd, owned by the user, before the start


def test_both_units_are_hardened_alike() -> None:
    hardening = [k for k in KEYS[SERVE] if k.startswith(("Service.Protect", "Service.Restrict"))]
    hardening += ["Service.MemoryDenyWriteExecute", "Service.SystemCallFilter"]
    hardening += ["Service.CapabilityBoundingSet", "Service.NoNewPrivileges", "Service.UMask"]
    assert len(hardening) > 10
    for key in hardening:
        assert KEYS[SERVE][key] == KEYS[WORKER][key], key


def sandbox_env(unit: Path, syscall_filter: bool) -> tuple[str, dict[str, str]]:
    """The Python that runs the sandbox script, and the environment naming the unit's system
    calls (with ``syscall_filter``)."""
    assert one(unit, "Service.MemoryDenyWriteExecute") == "yes"
    env = dict(os.environ)
    if not syscall_filter:
        return sys.executable, env
    env["VODEDGE_TEST_SYSCALLS"] = ",".join(sorted(allowed_syscalls(KEYS[unit])))
    return seccomp_python(), env


FILTERS = pytest.mark.parametrize(
    "syscall_filter", [False, True], ids=["mdwe", "mdwe+syscall-filter"]
)


@FILTERS
def test_serve_works_in_its_units_sandbox(tmp_path: Path, syscall_filter: bool) -> None:
    """Serving, an upload into the catalog, /metrics and the stop, under
    MemoryDenyWriteExecute= and SystemCallFilter= (any other system call kills it)."""
    python, env = sandbox_env(SERVE, syscall_filter)
    token = "sandbox-token-0123456789"
    port = free_port()
    media = tmp_path / "media"
    body = os.urandom(2**20)
    write_object(media, "/v/sb/h264-360p/seg-00001.m4s", body)
    cfg = write_config(tmp_path / "origin.toml", media, port, api={"tokens": [token]})
    proc = Proc(sandboxed(BIN, "serve", "-c", str(cfg), python=python), tmp_path / "log", env)
    proc.start()
    try:
        base = f"http://127.0.0.1:{port}"
        proc.wait_healthy(base + "/healthz")
        assert requests.get(base + "/v/sb/h264-360p/seg-00001.m4s", timeout=10).content == body
        auth = {"Authorization": f"Bearer {token}"}
        meta = {"title": "T", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        created = requests.post(base + "/api/v1/uploads", json=meta, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        put = requests.put(base + created.json()["upload_url"], data=body, headers=auth)
        assert put.json()["status"] == "complete", put.text
        text = requests.get(base + "/metrics", timeout=10).text
        assert 'vodedge_origin_videos{status="PENDING"} 1.0' in text
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log_tail()


@FILTERS
def test_a_worker_encodes_a_title_in_its_units_sandbox(
    tmp_path: Path, syscall_filter: bool
) -> None:
    """ffprobe, ffmpeg (x264, AAC) and Shaka Packager under MemoryDenyWriteExecute= and
    SystemCallFilter= take a title to READY."""
    python, env = sandbox_env(WORKER, syscall_filter)
    clip = make_title_clip(find_tools(), tmp_path / "clip.mkv", size="320x180", seconds=3.0)
    (tmp_path / "origin").mkdir()
    origin = make_origin(tmp_path / "origin")
    vid = origin.add_video(clip)
    argv = sandboxed(BIN, "worker", "-c", str(origin.config_path), "--once", python=python)
    started = time.monotonic()
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-4000:]
    assert origin.video(vid).status == "READY", (time.monotonic() - started, r.stderr[-4000:])
    assert (origin.title_dir(vid) / "master.m3u8").is_file()


def documented_alerts() -> list[str]:
    """The expressions of the alerts table in docs/origin.md."""
    text = (REPO / "docs" / "origin.md").read_text()
    table = text.split("**Alerts worth having**", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| [^|]+ \| `([^`]+)` \|", table, re.MULTILINE)


def test_documented_alerts_parse_and_name_exported_metrics(tmp_path: Path) -> None:
    exprs = documented_alerts()
    assert len(exprs) >= 8
    exported = origin_exported_metric_names(tmp_path)
    for expr in exprs:
        assert metric_names(expr) <= exported, expr
    r = promtool_check_exprs(exprs, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

"""firmware-config/sysctl.d/90-vodedge-appliance.conf: well-formed, explained, real keys and values
this kernel accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ops.tools import SYSCTL, run, tool

LINE = re.compile(r"^(?P<key>[a-z0-9_]+(?:\.[a-z0-9_-]+)+) = (?P<value>\S(?:.*\S)?)$")
PROC = Path("/proc/sys")


def settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(SYSCTL.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"line {n} is neither a comment nor 'key = value': {line!r}"
        assert m["key"] not in out, f"line {n}: {m['key']} set twice"
        out[m["key"]] = m["value"]
    return out


SETTINGS = settings()


def proc_path(key: str) -> Path:
    return PROC / key.replace(".", "/")


def in_initial_network_namespace() -> bool:
    # net.core.wmem_default and netdev_max_backlog are not registered in other namespaces
    return proc_path("net.core.netdev_max_backlog").exists()


def test_every_setting_is_explained() -> None:
    # each paragraph (lines between blank lines) that sets a key starts with a comment
    for para in SYSCTL.read_text().split("\n\n"):
        lines = para.strip("\n").splitlines()
        if any(LINE.match(ln) for ln in lines):
            assert lines[0].startswith("#"), f"no comment above: {lines[0]}"


def test_covers_the_serving_essentials() -> None:
    assert SETTINGS["net.core.default_qdisc"] == "fq"
    assert SETTINGS["net.ipv4.tcp_congestion_control"] == "bbr"
    assert SETTINGS["net.ipv4.tcp_slow_start_after_idle"] == "0"
    for key in (
        "net.core.somaxconn",
        "net.ipv4.tcp_notsent_lowat",
        "vm.dirty_bytes",
        "fs.file-max",
    ):
        assert key in SETTINGS


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_key_exists_and_value_has_the_kernels_shape(key: str) -> None:
    path = proc_path(key)
    if not path.exists():
        if key.startswith("net.") and not in_initial_network_namespace():
            pytest.skip(f"{key} is only visible in the initial network namespace")
        pytest.fail(f"{key}: no {path} on this kernel")
    current = path.read_text().split()
    value = SETTINGS[key].split()
    # same number of fields (e.g. tcp_rmem's min/default/max), numbers where the kernel has numbers
    assert len(value) == len(current), (key, value, current)
    for v, c in zip(value, current, strict=True):
        assert v.isdigit() == c.lstrip("-").isdigit(), (key, v, c)


def test_buffer_triples_are_ordered() -> None:
    for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.ip_local_port_range"):
        values = [int(v) for v in SETTINGS[key].split()]
        assert values == sorted(values), key
    assert int(SETTINGS["vm.dirty_background_bytes"]) < int(SETTINGS["vm.dirty_bytes"])
    # the port range stays clear of the daemon's default listeners
    assert int(SETTINGS["net.ipv4.ip_local_port_range"].split()[0]) > 8090


def test_congestion_control_is_available() -> None:
    available = (PROC / "net/ipv4/tcp_available_congestion_control").read_text().split()
    module = list(Path("/lib/modules").glob("*/kernel/net/ipv4/tcp_bbr.ko*"))
    assert "bbr" in available or module, "no BBR in this kernel"


def test_the_kernel_accepts_the_network_values(tmp_path: Path) -> None:
    """Writes the per-namespace net.* settings inside a throwaway network namespace: the kernel
    rejects a malformed or out-of-range value, and the host keeps its own values."""
    unshare = tool("unshare")
    probe = run([unshare, "--net", "true"])
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    net = {k: v for k, v in SETTINGS.items() if k.startswith("net.")}
    before = {k: proc_path(k).read_text() for k in net if proc_path(k).exists()}
    # Only keys writable inside the new namespace are per-namespace (others are absent there, or
    # read-only views of the host's values).
    script = "\n".join(
        f'case $(stat -c %A {proc_path(k)} 2>/dev/null) in ?rw*) printf "%s\\n" "{v}" > '
        f"{proc_path(k)} && echo 'set {k}' || echo 'rejected {k}';; esac"
        for k, v in net.items()
    )
    r = run([unshare, "--net", "sh", "-c", script])
    assert "rejected" not in r.stdout + r.stderr, r.stdout + r.stderr
    applied = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("set ")}
    assert {"net.ipv4.tcp_rmem", "net.ipv4.tcp_congestion_control"} <= applied, applied
    assert {k: proc_path(k).read_text() for k in before} == before

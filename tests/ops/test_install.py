"""systemd/install.sh into a directory tree (--root): what it writes, keeps and refuses."""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from pathlib import Path

import pytest

from tests.ops.tools import (
    FIRMWARE,
    INSTALL,
    SYSCTL,
    appliance_bin,
    install,
    install_ok,
    run,
    tool,
)
from vodedge.sizes import parse_size

BIN = appliance_bin()
UNIT_PATH = "etc/systemd/system/vodedge-appliance.service"
DROPIN_PATH = "etc/systemd/system/vodedge-appliance.service.d/10-disks.conf"
CONF_PATH = "etc/vodedge/appliance.toml"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under root with its mode and (for files) its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = (mode(p), p.read_bytes() if p.is_file() else None)
    return out


def template_disk_lines(template: str) -> set[str]:
    """The settings inside the template's [[storage.disks]] blocks (install.sh replaces them)."""
    out, inside = set(), False
    for line in template.splitlines():
        if line.startswith("["):
            inside = line.strip() == "[[storage.disks]]"
        elif inside and line.strip() and not line.startswith("#"):
            out.add(line)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("root")
    out = install_ok(r, "--bin", BIN, "--disk", "/srv/disk0")
    (r / "install.out").write_text(out.stdout)
    return r


def test_unit_runs_the_given_binary(root: Path) -> None:
    unit = root / UNIT_PATH
    assert mode(unit) == 0o644
    lines = unit.read_text().splitlines()
    assert f"ExecStart={BIN} serve -c /etc/vodedge/appliance.toml" in lines
    assert "/opt/vodedge/bin" not in unit.read_text()


def test_config_is_the_firmware_config_with_a_token_and_systemd_paths(root: Path) -> None:
    conf = root / CONF_PATH
    assert mode(conf) == 0o640
    assert mode(conf.parent) == 0o750
    text = conf.read_text()
    cfg = tomllib.loads(text)
    token = cfg["admin"]["token"]
    assert len(token) >= 40 and token != "change-me"
    assert cfg["runtime"] == {"run_dir": "/run/vodedge", "state_dir": "/var/lib/vodedge"}
    [disk] = cfg["storage"]["disks"]
    assert disk["path"] == "/srv/disk0" and parse_size(disk["size"]) >= 16 * 2**20
    assert disk["require_mount"] is True
    # Only those lines differ from the template: its comments and other settings are kept.
    template = (FIRMWARE / "appliance.toml").read_text()
    diff = list(difflib.ndiff(template.splitlines(), text.splitlines()))
    removed = {d[2:] for d in diff if d.startswith("- ")} - {"", "[[storage.disks]]"}
    added = {d[2:] for d in diff if d.startswith("+ ")} - {"", "[[storage.disks]]"}
    tpl = tomllib.loads(template)
    assert removed == {
        f'token = "{tpl["admin"]["token"]}"',
        f'run_dir = "{tpl["runtime"]["run_dir"]}"',
        *template_disk_lines(template),
    }
    assert added == {
        f'token = "{token}"',
        'run_dir = "/run/vodedge"',
        'state_dir = "/var/lib/vodedge"',
        'path = "/srv/disk0"',
        f'size = "{disk["size"]}"',
        "require_mount = true",
    }
    # the install checked it with the real binary
    assert "config check passed" in (root / "install.out").read_text()


def test_disk_user_tmpfiles_and_sysctl(root: Path) -> None:
    disk = root / "srv/disk0"
    assert disk.is_dir() and mode(disk) == 0o750
    assert (root / DROPIN_PATH).read_text().splitlines()[-1] == "ReadWritePaths=-/srv/disk0"
    sysusers = root / "usr/lib/sysusers.d/vodedge.conf"
    assert mode(sysusers) == 0o644
    assert any(
        line.split()[:3] == ["u", "vodedge", "-"] for line in sysusers.read_text().splitlines()
    )
    tmpfiles = (root / "usr/lib/tmpfiles.d/vodedge.conf").read_text().splitlines()
    assert "d /srv/disk0 0750 vodedge vodedge -" in tmpfiles
    assert "z /etc/vodedge/appliance.toml 0640 root vodedge -" in tmpfiles
    sysctl = root / "etc/sysctl.d/90-vodedge-appliance.conf"
    assert mode(sysctl) == 0o644 and sysctl.read_bytes() == SYSCTL.read_bytes()


def test_nothing_runs_against_the_host_under_root(root: Path) -> None:
    out = (root / "install.out").read_text()
    for cmd in (
        "systemd-sysusers",
        "systemd-tmpfiles --create",
        "sysctl --system",
        "systemctl enable",
    ):
        assert f"would run on the target: {cmd}" in out, cmd
    assert "running:" not in out
    assert not (root / "etc/systemd/system/multi-user.target.wants").exists()


def test_each_install_gets_its_own_token(root: Path, tmp_path: Path) -> None:
    install_ok(tmp_path, "--bin", BIN, "--no-enable")
    a = tomllib.loads((root / CONF_PATH).read_text())["admin"]["token"]
    b = tomllib.loads((tmp_path / CONF_PATH).read_text())["admin"]["token"]
    assert a != b


def test_rerun_keeps_the_operators_config_and_changes_nothing(tmp_path: Path) -> None:
    install_ok(tmp_path, "--bin", BIN, "--disk", "/srv/disk0")
    conf = tmp_path / CONF_PATH
    edited = conf.read_text().replace('level = "info"', 'level = "debug"') + "# operator edit\n"
    conf.write_text(edited)
    before = tree(tmp_path)
    r = install_ok(tmp_path, "--bin", BIN, "--disk", "/srv/disk0")
    assert conf.read_text() == edited
    assert tree(tmp_path) == before
    assert "kept existing /etc/vodedge/appliance.toml" in r.stdout
    assert "wrote" not in r.stdout  # every file was already as it should be


def test_disks_follow_the_config(tmp_path: Path) -> None:
    # No --disk: the template's disk is created and made writable.
    install_ok(tmp_path, "--bin", BIN)
    assert (tmp_path / "srv/vodedge/disk0").is_dir()
    assert "ReadWritePaths=-/srv/vodedge/disk0" in (tmp_path / DROPIN_PATH).read_text()
    # A disk the operator adds to the config is picked up by the next run.
    conf = tmp_path / CONF_PATH
    conf.write_text(
        conf.read_text().replace(
            "[tokens]", '[[storage.disks]]\npath = "/data/ssd1"\nsize = "1TB"\n\n[tokens]'
        )
    )
    install_ok(tmp_path, "--bin", BIN)
    assert (tmp_path / "data/ssd1").is_dir()
    dropin = (tmp_path / DROPIN_PATH).read_text().splitlines()
    assert dropin[-2:] == ["ReadWritePaths=-/srv/vodedge/disk0", "ReadWritePaths=-/data/ssd1"]


def test_disks_on_one_file_system_share_it(tmp_path: Path) -> None:
    install_ok(tmp_path, "--bin", BIN, "--disk", "/srv/a", "--disk", "/srv/b")
    disks = tomllib.loads((tmp_path / CONF_PATH).read_text())["storage"]["disks"]
    assert [d["path"] for d in disks] == ["/srv/a", "/srv/b"]
    st = os.statvfs(tmp_path)
    assert disks[0]["size"] == disks[1]["size"]
    # each gets half of 75% of the file system
    assert 0 < parse_size(disks[0]["size"]) <= st.f_blocks * st.f_frsize * 3 / 8


def test_a_broken_config_fails_the_install(tmp_path: Path) -> None:
    install_ok(tmp_path, "--bin", BIN)
    conf = tmp_path / CONF_PATH
    conf.write_text(conf.read_text().replace('level = "info"', 'level = "loud"'))
    r = install(tmp_path, "--bin", BIN)
    assert r.returncode == 1
    assert "log.level" in r.stderr and "check-config" in r.stderr


def test_missing_binary_under_root_is_a_warning(tmp_path: Path) -> None:
    r = install_ok(tmp_path, "--bin", "/opt/vodedge/bin/vodedge-appliance", "--no-enable")
    assert "will not be checked" in r.stderr
    assert "not enabling" in r.stdout
    unit = (tmp_path / UNIT_PATH).read_text().splitlines()
    assert (
        "ExecStart=/opt/vodedge/bin/vodedge-appliance serve -c /etc/vodedge/appliance.toml" in unit
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument"),
        (["--disk", "srv/relative"], "absolute path"),
        (["--disk", "/srv/with space"], "absolute path"),
        (["--bin", "/opt/my dir/vodedge-appliance"], "white space"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    r = install(tmp_path, "--bin", BIN, *args)
    assert r.returncode == 1 and message in r.stderr
    assert not (tmp_path / CONF_PATH).exists()


def test_help() -> None:
    r = run(["bash", str(INSTALL), "--help"])
    assert r.returncode == 0 and "--root DIR" in r.stdout and "--disk PATH" in r.stdout


def test_installing_into_slash_needs_root() -> None:
    argv = ["bash", str(INSTALL), "--bin", BIN]
    if os.geteuid() == 0:
        # as an unprivileged user, so that a regression cannot install on this host
        argv = [tool("setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    r = run(argv)
    assert r.returncode == 1 and "needs root" in r.stderr


def test_scripts_are_shellcheck_clean() -> None:
    scripts = [INSTALL, INSTALL.parents[1] / "scripts" / "ensure_test_tools.sh"]
    r = run([tool("shellcheck"), *map(str, scripts)])
    assert r.returncode == 0, r.stdout


# Installs into "/" inside a private mount namespace: /etc, /usr/lib, /srv and /var are overlays
# whose changes land in $1/upper, /run is empty (no systemd to talk to) and /proc/sys is a tmpfs
# (sysctl --system changes nothing). The host is never touched.
HOST_SANDBOX = """
set -eu
t=$1
shift
for d in /etc /usr/lib /srv /var; do
    mkdir -p "$t/upper$d" "$t/work$d"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$t/upper$d,workdir=$t/work$d" "$d"
done
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /proc/sys
"$@"
"""


def test_install_on_the_host_creates_the_user_owners_and_enables(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    if Path("/etc/vodedge").exists():
        pytest.skip("this host already has /etc/vodedge")
    for cmd in ("systemd-sysusers", "systemd-tmpfiles", "systemctl"):
        tool(cmd)
    argv = [tool("unshare"), "--mount", "--propagation", "private", "bash", "-c", HOST_SANDBOX]
    r = run([*argv, "sandbox", str(tmp_path), "bash", str(INSTALL), "--bin", BIN])
    if r.returncode != 0 and "vodedge install" not in r.stdout and "install.sh" not in r.stderr:
        pytest.skip(f"no private mount namespace with overlays here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running: systemd-sysusers" in r.stdout and "would run" not in r.stdout
    upper = tmp_path / "upper"
    passwd = upper / "etc/passwd"
    users = passwd.read_text() if passwd.exists() else Path("/etc/passwd").read_text()
    [entry] = [ln.split(":") for ln in users.splitlines() if ln.startswith("vodedge:")]
    uid, gid = int(entry[2]), int(entry[3])
    assert entry[6] == "/usr/sbin/nologin" and uid < 1000  # a system user
    for path, owner, perms in [
        ("etc/vodedge", (0, gid), 0o750),
        ("etc/vodedge/appliance.toml", (0, gid), 0o640),
        ("srv/vodedge/disk0", (uid, gid), 0o750),
    ]:
        st = (upper / path).stat()
        assert ((st.st_uid, st.st_gid), mode(upper / path)) == (owner, perms), path
    wants = upper / "etc/systemd/system/multi-user.target.wants/vodedge-appliance.service"
    assert os.readlink(wants) == "/etc/systemd/system/vodedge-appliance.service"
    assert "config check passed" in r.stdout

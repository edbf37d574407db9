"""systemd/install.sh --origin into a directory tree (--root): the user, units, config with its
API token, directories and enabled instances; what it keeps, refuses and leaves to the appliance
mode."""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from pathlib import Path

import pytest

from origin import config as origin_config
from tests.ops.test_install import HOST_SANDBOX, mode, tree
from tests.ops.tools import FIRMWARE, INSTALL, REPO, appliance_bin, install, install_ok, run, tool

BIN = str(Path(sys.executable).parent / "vodedge-origin")
INSTALLED_BIN = "/opt/vodedge/bin/vodedge-origin"
UNITS = ("vodedge-origin.service", "vodedge-origin-worker@.service")
UNIT_DIR = "etc/systemd/system"
CONF_PATH = "etc/vodedge/origin.toml"
STATE = "/var/lib/vodedge-origin"
STATE_DIRS = [STATE, *(f"{STATE}/{d}" for d in ("media", "sources", "catalog", "uploads", "work"))]
TEMPLATE = FIRMWARE / "origin.toml"


def origin_install(root: Path, *args: str) -> str:
    return install_ok(root, "--origin", "--bin", BIN, *args).stdout


def token_of(root: Path) -> str:
    [token] = tomllib.loads((root / CONF_PATH).read_text())["api"]["tokens"]
    assert isinstance(token, str)
    return token


def enabled(out: str) -> list[str]:
    """The units the install would enable on the target (``--now`` kept as a word)."""
    [line] = [ln for ln in out.splitlines() if "would run on the target: systemctl enable" in ln]
    return line.split("systemctl enable ", 1)[1].split()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("root")
    (r / "install.out").write_text(origin_install(r, "--workers", "3"))
    return r


def test_units_are_the_shipped_ones_running_the_given_binary(root: Path) -> None:
    for name in UNITS:
        unit = root / UNIT_DIR / name
        assert mode(unit) == 0o644
        shipped = (REPO / "systemd" / name).read_text()
        expected = [
            ln.replace(INSTALLED_BIN, BIN) if ln.startswith("ExecStart=") else ln
            for ln in shipped.splitlines()
        ]
        assert unit.read_text().splitlines() == expected, name
        [exec_start] = [ln for ln in expected if ln.startswith("ExecStart=")]
        assert f"{BIN} serve -c " in exec_start or f"exec {BIN} worker -c " in exec_start
        dropin = root / UNIT_DIR / f"{name}.d" / "10-paths.conf"
        assert mode(dropin) == 0o644
        # every directory of the shipped config is in the units' StateDirectory=
        assert "ReadWritePaths" not in dropin.read_text()
        assert dropin.read_text().splitlines()[-1] == "[Service]"


def test_config_is_the_firmware_config_with_a_random_token(root: Path) -> None:
    conf = root / CONF_PATH
    assert mode(conf) == 0o640 and mode(conf.parent) == 0o755
    token = token_of(root)
    assert len(token) >= 40 and token.replace("-", "").replace("_", "").isalnum()
    template = TEMPLATE.read_text()
    diff = [d for d in difflib.ndiff(template.splitlines(), conf.read_text().splitlines())]
    changed = [d for d in diff if d.startswith(("- ", "+ "))]
    assert changed == ["- tokens = []", f'+ tokens = ["{token}"]']
    cfg = origin_config.load(conf)  # what check-config and the units read
    assert cfg.api.tokens == (token,)
    assert "config check passed" in (root / "install.out").read_text()


def test_user_tmpfiles_and_directories(root: Path) -> None:
    sysusers = root / "usr/lib/sysusers.d/vodedge-origin.conf"
    assert mode(sysusers) == 0o644
    [user] = [ln.split() for ln in sysusers.read_text().splitlines() if ln.startswith("u ")]
    assert user[:3] == ["u", "vodedge-origin", "-"] and user[-1] == STATE
    tmpfiles = (root / "usr/lib/tmpfiles.d/vodedge-origin.conf").read_text().splitlines()
    assert "z /etc/vodedge/origin.toml 0640 root vodedge-origin -" in tmpfiles
    for d in STATE_DIRS:
        assert f"d {d} 0750 vodedge-origin vodedge-origin -" in tmpfiles, d
        assert (root / d.lstrip("/")).is_dir() and mode(root / d.lstrip("/")) == 0o750, d
    # nothing of the appliance's
    assert not (root / "usr/lib/sysusers.d/vodedge.conf").exists()
    assert not (root / "etc/vodedge/appliance.toml").exists()
    assert not (root / "etc/sysctl.d").exists()


def test_nothing_runs_against_the_host_under_root(root: Path) -> None:
    out = (root / "install.out").read_text()
    assert (
        "would run on the target: systemd-sysusers /usr/lib/sysusers.d/vodedge-origin.conf" in out
    )
    assert "would run on the target: systemd-tmpfiles --create" in out
    assert enabled(out) == [
        "--now",
        "vodedge-origin.service",
        *(f"vodedge-origin-worker@{n}.service" for n in range(3)),
    ]
    assert "running:" not in out
    assert not (root / UNIT_DIR / "multi-user.target.wants").exists()


@pytest.mark.parametrize("name", ["vodedge-origin.service", "vodedge-origin-worker@2.service"])
def test_systemd_analyze_verify_accepts_the_installed_units(root: Path, name: str) -> None:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{root / UNIT_DIR}:"}
    r = run([tool("systemd-analyze"), "verify", name], env=env)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    bad = [ln for ln in lines if any(w in ln.lower() for w in ("unknown", "failed", "invalid"))]
    assert r.returncode == 0 and not bad, lines


def test_one_worker_per_cpu_by_default_and_no_start(tmp_path: Path) -> None:
    out = origin_install(tmp_path, "--no-start")
    cpus = len(os.sched_getaffinity(0))
    assert enabled(out) == [
        "vodedge-origin.service",
        *(f"vodedge-origin-worker@{n}.service" for n in range(cpus)),
    ]
    assert "not starting them (--no-start)" in out


def test_no_enable(tmp_path: Path) -> None:
    out = origin_install(tmp_path, "--no-enable")
    assert "systemctl enable" not in out and "not enabling" in out


def test_rerun_keeps_the_config_and_its_token_and_changes_nothing(tmp_path: Path) -> None:
    origin_install(tmp_path)
    token = token_of(tmp_path)
    conf = tmp_path / CONF_PATH
    edited = conf.read_text().replace('level = "info"', 'level = "debug"') + "# operator edit\n"
    conf.write_text(edited)
    before = tree(tmp_path)
    out = origin_install(tmp_path)
    assert tree(tmp_path) == before
    assert conf.read_text() == edited and token_of(tmp_path) == token
    assert "kept existing /etc/vodedge/origin.toml" in out
    assert "wrote" not in out and "created" not in out


def test_each_install_gets_its_own_token(root: Path, tmp_path: Path) -> None:
    origin_install(tmp_path, "--no-enable")
    assert token_of(tmp_path) != token_of(root)


def test_directories_outside_the_state_directory_are_opened(tmp_path: Path) -> None:
    origin_install(tmp_path)
    conf = tmp_path / CONF_PATH
    conf.write_text(
        conf.read_text().replace(
            'root = "/var/lib/vodedge-origin/media"', 'root = "/srv/media/published"'
        )
    )
    out = origin_install(tmp_path)
    assert "created /srv/media/published" in out
    assert mode(tmp_path / "srv/media/published") == 0o750
    tmpfiles = (tmp_path / "usr/lib/tmpfiles.d/vodedge-origin.conf").read_text().splitlines()
    assert "d /srv/media/published 0750 vodedge-origin vodedge-origin -" in tmpfiles
    for name in UNITS:
        dropin = (tmp_path / UNIT_DIR / f"{name}.d" / "10-paths.conf").read_text()
        assert dropin.splitlines()[-1] == "ReadWritePaths=-/srv/media/published", name


def test_workers_beyond_the_new_count_are_disabled(tmp_path: Path) -> None:
    origin_install(tmp_path, "--workers", "4")
    wants = tmp_path / UNIT_DIR / "multi-user.target.wants"
    wants.mkdir()
    for n in range(4):  # what systemctl enable made on the target
        target = "/etc/systemd/system/vodedge-origin-worker@.service"
        (wants / f"vodedge-origin-worker@{n}.service").symlink_to(target)
    out = origin_install(tmp_path, "--workers", "2")
    assert (
        "would run on the target: systemctl disable --now "
        "vodedge-origin-worker@2.service vodedge-origin-worker@3.service"
    ) in out
    assert enabled(out)[-1] == "vodedge-origin-worker@1.service"


def test_a_broken_config_fails_the_install(tmp_path: Path) -> None:
    origin_install(tmp_path)
    conf = tmp_path / CONF_PATH
    conf.write_text(conf.read_text().replace('level = "info"', 'level = "loud"'))
    r = install(tmp_path, "--origin", "--bin", BIN)
    assert r.returncode == 1
    assert "log.level" in r.stderr and "check-config" in r.stderr
    assert "systemctl enable" not in r.stdout  # nothing is enabled or started with it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--origin", "--bin", BIN, "--disk", "/srv/disk0"], "--disk is for the appliance"),
        (["--origin", "--bin", BIN, "--workers", "0"], "--workers 0"),
        (["--origin", "--bin", BIN, "--workers", "two"], "--workers two"),
        (["--origin", "--bin", "/opt/it's/vodedge-origin"], "absolute path"),
        (["--bin", appliance_bin(), "--workers", "2"], "add --origin"),
        (["--bin", appliance_bin(), "--no-start"], "add --origin"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    r = install(tmp_path, *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_help_names_the_origin_options() -> None:
    r = run(["bash", str(INSTALL), "--help"])
    assert r.returncode == 0
    assert all(o in r.stdout for o in ("--origin", "--workers N", "--no-start"))


def test_next_to_the_appliance(tmp_path: Path) -> None:
    """One tree with both: each keeps its files; the origin warns that the appliance's closed
    /etc/vodedge keeps its user from the config."""
    install_ok(tmp_path, "--bin", appliance_bin(), "--no-enable")
    appliance = tree(tmp_path)
    r = install_ok(tmp_path, "--origin", "--bin", BIN, "--no-enable")
    assert "cannot read origin.toml" in r.stderr
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if k in appliance} == appliance


def test_install_on_the_host_creates_the_user_and_owners(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    if Path("/etc/vodedge").exists() or Path(STATE).exists():
        pytest.skip("this host already has /etc/vodedge or the origin's state directory")
    for cmd in ("systemd-sysusers", "systemd-tmpfiles", "systemctl"):
        tool(cmd)
    argv = [tool("unshare"), "--mount", "--propagation", "private", "bash", "-c", HOST_SANDBOX]
    script = ["bash", str(INSTALL), "--origin", "--bin", BIN, "--workers", "2"]
    r = run([*argv, "sandbox", str(tmp_path), *script])
    if r.returncode != 0 and "vodedge install" not in r.stdout and "install.sh" not in r.stderr:
        pytest.skip(f"no private mount namespace with overlays here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running: systemd-sysusers" in r.stdout and "would run" not in r.stdout
    # no systemd in the sandbox: enabled, to start at the next boot
    assert "systemd is not running here" in r.stderr
    upper = tmp_path / "upper"
    passwd = upper / "etc/passwd"
    users = passwd.read_text() if passwd.exists() else Path("/etc/passwd").read_text()
    [entry] = [ln.split(":") for ln in users.splitlines() if ln.startswith("vodedge-origin:")]
    uid, gid = int(entry[2]), int(entry[3])
    assert entry[5] == STATE and uid < 1000  # a system user
    expected = [
        ("etc/vodedge", (0, 0), 0o755),
        ("etc/vodedge/origin.toml", (0, gid), 0o640),
        *((d.lstrip("/"), (uid, gid), 0o750) for d in STATE_DIRS),
    ]
    for path, owner, perms in expected:
        st = (upper / path).stat()
        assert ((st.st_uid, st.st_gid), mode(upper / path)) == (owner, perms), path
    wants = upper / UNIT_DIR / "multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == [
        "vodedge-origin-worker@0.service",
        "vodedge-origin-worker@1.service",
        "vodedge-origin.service",
    ]
    assert (
        os.readlink(wants / "vodedge-origin.service")
        == "/etc/systemd/system/vodedge-origin.service"
    )

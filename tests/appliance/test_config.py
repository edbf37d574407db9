"""Config validation: the shipped default is valid; every bad key gives one clear line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import load
from tests.support.procs import REPO_ROOT
from vodedge.configfile import ConfigError

GOOD = """
[server]
listen = ["127.0.0.1:8080", "[::1]:8080"]
workers = 2
[admin]
token = "admin-token-0123456789"
[fill]
origins = ["http://127.0.0.1:8081"]
parent = "http://10.0.0.2:8080"
[[storage.disks]]
path = "/tmp/d0"
size = "1.5TB"
[[storage.disks]]
path = "/tmp/d1"
size = "200GB"
[tokens]
required = true
[tokens.keys]
k1 = "0123456789abcdef0123"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
    )


def test_shipped_default_config_is_valid_once_given_a_token(tmp_path: Path) -> None:
    shipped = REPO_ROOT / "firmware-config" / "appliance.toml"
    r = cli("check-config", "-c", str(shipped))
    assert r.returncode == 2 and "admin.token: replace the placeholder" in r.stderr
    text = shipped.read_text()
    placeholder = 'token = "REPLACE-ME-with-a-random-token"'
    assert placeholder in text
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(text.replace(placeholder, 'token = "a-random-token-0123456789"'))
    r = cli("check-config", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_good_config_parses(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text(GOOD)
    cfg = load(p)
    assert cfg.server.listen == (("127.0.0.1", 8080), ("::1", 8080))
    assert cfg.fill.upstreams == ("http://10.0.0.2:8080", "http://127.0.0.1:8081")
    assert [d.size for d in cfg.storage.disks] == [1_500_000_000_000, 200_000_000_000]
    assert cfg.tokens.keys == {"k1": b"0123456789abcdef0123"}


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('size = "1.5TB"', 'size = "1.5XB"', "storage.disks[0].size"),
        ("workers = 2", 'workers = "two"', "server.workers"),
        ("workers = 2", "workerz = 2", "server.workerz"),
        ('"127.0.0.1:8080", ', '"localhost", ', "server.listen"),
        ('origins = ["http://127.0.0.1:8081"]', 'origins = ["ftp://x"]', "fill.origins"),
        ('k1 = "0123456789abcdef0123"', 'k1 = "short"', "tokens.keys.k1"),
        ('k1 = "0123456789abcdef0123"', 'k1 = "base64:"', "tokens.keys.k1"),  # empty key
        ('k1 = "0123456789abcdef0123"', 'k1 = "base64:QQ=="', "tokens.keys.k1"),  # 1 byte
        ('path = "/tmp/d1"', 'path = "/tmp/d0"', "storage.disks[1].path"),
        ('size = "200GB"', 'size = "1MB"', "storage.disks[1].size"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    p = tmp_path / "a.toml"
    p.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(p)
    r = cli("check-config", "-c", str(p))
    assert r.returncode == 2
    assert key in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_with_bad_config_exits_nonzero(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text("[server\n")
    r = cli("serve", "-c", str(p))
    assert r.returncode == 2
    assert "not valid TOML" in r.stderr
    r = cli("serve", "-c", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "not found" in r.stderr

"""Origin config files: what loads, and that every bad value names its key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from origin import config
from origin.cli import main
from vodedge.configfile import ConfigError

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-config" / "origin.toml"

GOOD = """
[server]
listen = ["127.0.0.1:8081", "[::1]:8082"]

[media]
root = "/srv/media"

[log]
level = "DEBUG"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "origin.toml"
    path.write_text(text)
    return path


def test_full_config_loads(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.server.listen == (("127.0.0.1", 8081), ("::1", 8082))
    assert cfg.media.root == Path("/srv/media")
    assert cfg.log.level == "debug"


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""))
    assert cfg.server.listen == (("127.0.0.1", 8081),)
    assert cfg.media.root == Path("./var/origin/media")
    assert cfg.log.level == "info"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.media.root = Path("/elsewhere")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[servr]\n", "servr: unknown key"),
        ("[server]\nworkers = 2\n", "server.workers: unknown key"),
        ('[server]\nlisten = "127.0.0.1:8081"\n', "server.listen:"),
        ("[server]\nlisten = []\n", "server.listen:"),
        ('[server]\nlisten = ["127.0.0.1:1", "nohost"]\n', "server.listen[1]:"),
        ('[server]\nlisten = ["127.0.0.1:70000"]\n', "server.listen[0]:"),
        ('[server]\nlisten = ["a:1", "a:1"]\n', "server.listen[1]: duplicate"),
        ("[media]\nroot = 5\n", "media.root:"),
        ('[media]\nroot = ""\n', "media.root:"),
        ('[media]\npath = "/x"\n', "media.path: unknown key"),
        ('[log]\nlevel = "loud"\n', "log.level:"),
        ("[api]\npart_idle_timeout_s = 0.5\n", "api.part_idle_timeout_s: must be >= 1.0"),
        ('[api]\npart_idle_timeout_s = "60"\n', "api.part_idle_timeout_s: expected float"),
        ('[pipeline]\nmetrics_listen = "9210"\n', "pipeline.metrics_listen: expected 'host:port'"),
        ("[pipeline]\nmetrics_listen = 9210\n", "pipeline.metrics_listen: expected str"),
        ("[pipeline]\nrungs_per_job = -1\n", "pipeline.rungs_per_job: must be >= 0"),
        ("[api]\nupload_expiry_s = 60\n", "api.upload_expiry_s: must be >= 3600"),
        ('[api]\nupload_expiry_s = "7d"\n', "api.upload_expiry_s: expected float"),
        ("[api]\njanitor_interval_s = 0\n", "api.janitor_interval_s: must be >= 1.0"),
        ("[pipeline]\nfailed_work_expiry_s = -1\n", "pipeline.failed_work_expiry_s: must be >= 0"),
        ('[pipeline]\nrungs_per_job = "all"\n', "pipeline.rungs_per_job: expected int"),
        ("[pipeline]\nrungs_per_job = 1.5\n", "pipeline.rungs_per_job: expected int"),
        ("server = 1\n", "server: expected a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_cli_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = write(tmp_path, '[log]\nlevel = "loud"\n')
    assert main([command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "log.level" in err


def test_cli_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.replace("/srv/media", str(tmp_path))
    assert main(["check-config", "-c", str(write(tmp_path, text))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:")
    assert "127.0.0.1:8081" in out


def test_operation_keys(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""))
    assert (cfg.api.part_idle_timeout_s, cfg.pipeline.metrics_listen) == (60.0, None)
    text = '[api]\npart_idle_timeout_s = 5\n[pipeline]\nmetrics_listen = "[::1]:9211"\n'
    cfg = config.load(write(tmp_path, text))
    assert (cfg.api.part_idle_timeout_s, cfg.pipeline.metrics_listen) == (5.0, ("::1", 9211))


def test_janitor_keys(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""))
    week = 7 * 86400.0
    assert (cfg.api.upload_expiry_s, cfg.api.janitor_interval_s) == (week, 3600.0)
    assert cfg.pipeline.failed_work_expiry_s == week
    text = (
        "[api]\nupload_expiry_s = 7200\njanitor_interval_s = 60\n"
        "[pipeline]\nfailed_work_expiry_s = 0\n"
    )
    cfg = config.load(write(tmp_path, text))
    assert (cfg.api.upload_expiry_s, cfg.api.janitor_interval_s) == (7200.0, 60.0)
    assert cfg.pipeline.failed_work_expiry_s == 0.0


@pytest.mark.parametrize(
    ("text", "rungs_per_job"), [("", 0), ("rungs_per_job = 1", 1), ("rungs_per_job = 3", 3)]
)
def test_rungs_per_job(tmp_path: Path, text: str, rungs_per_job: int) -> None:
    cfg = config.load(write(tmp_path, f"[pipeline]\n{text}\n"))
    assert cfg.pipeline.rungs_per_job == rungs_per_job


def test_the_firmware_config_loads_and_lists_every_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = config.load(FIRMWARE)
    raw = tomllib.loads(FIRMWARE.read_text())
    for section in dataclasses.fields(cfg):
        keys = {f.name for f in dataclasses.fields(getattr(cfg, section.name))}
        assert set(raw[section.name]) == keys, section.name
    # a box's paths, under the units' StateDirectory=
    state = Path("/var/lib/vodedge-origin")
    paths = [cfg.media.root, cfg.media.sources, cfg.catalog.path, cfg.api.upload_dir]
    assert all(p.is_relative_to(state) for p in [*paths, cfg.pipeline.work_dir])
    assert cfg.pipeline.concurrency == 1 and cfg.pipeline.metrics_listen is None
    assert main(["check-config", "-c", str(FIRMWARE)]) == 0
    assert capsys.readouterr().out.startswith("ok: listen 0.0.0.0:8081;")

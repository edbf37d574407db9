"""The pure rules behind the operations features: reload merge, overlay, windows, rate, jobs,
admin input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.admin.requests import (
    BadRequest,
    decode_cursor,
    encode_cursor,
    parse_prefill,
    parse_purge,
)
from appliance.config import (
    PrefillConfig,
    apply_overlay,
    from_raw,
    merge_reload,
    parse_window,
)
from appliance.prefill import (
    Job,
    JobState,
    PrefillFile,
    PrefillSpec,
    in_window,
    load_jobs,
    save_progress,
    save_spec,
)
from appliance.ratelimit import SharedRate, gcra_reserve
from appliance.titles import TitleIndex
from vodedge.bearer import bearer_ok
from vodedge.configfile import ConfigError

RAW = {
    "server": {"listen": ["127.0.0.1:8080"], "workers": 2},
    "admin": {"listen": "127.0.0.1:8090", "token": "a" * 20},
    "fill": {"origins": ["http://o1:8081"]},
    "storage": {"disks": [{"path": "/tmp/x/d0", "size": "1GB"}]},
    "tokens": {"required": False},
}


def test_merge_reload_keeps_restart_only_keys_and_lists_changes() -> None:
    new = {
        **RAW,
        "server": {"listen": ["127.0.0.1:9999"], "workers": 2},
        "admin": {"listen": "127.0.0.1:7777", "token": "b" * 20},
        "fill": {"origins": ["http://o2:8081"]},
    }
    effective, live, restart = merge_reload(RAW, new)
    assert effective["server"] == RAW["server"]
    assert effective["admin"] == {"listen": "127.0.0.1:8090", "token": "b" * 20}
    assert effective["fill"] == {"origins": ["http://o2:8081"]}
    assert live == ["admin.token", "fill.origins"]
    assert restart == ["admin.listen", "server.listen"]
    cfg = from_raw(effective, Path("/tmp"))
    assert cfg.fill.origins == ("http://o2:8081",) and cfg.admin.token == "b" * 20


def test_overlay_adds_token_keys_and_fill_window() -> None:
    cfg = from_raw(RAW, Path("/tmp"))
    out = apply_overlay(cfg, {"token_keys": {"k9": "x" * 20}, "fill_window": "22:00-06:00"})
    assert out.tokens.keys == {"k9": b"x" * 20}
    assert out.prefill.window == (22 * 60, 6 * 60)
    assert apply_overlay(out, {"fill_window": ""}).prefill.window is None
    for bad in (
        {"token_keys": {"a.b": "x" * 20}},
        {"token_keys": {"k": "short"}},
        {"fill_window": 5},
    ):
        with pytest.raises(ConfigError):
            apply_overlay(cfg, bad)
    assert from_raw(RAW, Path("/tmp"), {"fill_window": "01:00-02:00"}).digest != cfg.digest


def test_windows() -> None:
    assert parse_window("02:00-14:30") == (120, 870)
    for bad in ("2-3", "25:00-01:00", "01:00-01:00", "aa:bb-01:00"):
        with pytest.raises(ValueError):
            parse_window(bad)
    assert in_window(None, 5)
    assert in_window((120, 840), 120) and not in_window((120, 840), 840)
    assert in_window((1320, 360), 1400) and in_window((1320, 360), 10)
    assert not in_window((1320, 360), 720)


def test_gcra_spaces_reservations_at_the_rate() -> None:
    tat, ahead = gcra_reserve(1000.0, 0.0, 10.0, 500)
    assert (tat, ahead) == (10.5, 0.5)
    tat, ahead = gcra_reserve(1000.0, tat, 10.1, 500)
    assert tat == 11.0 and ahead == pytest.approx(0.9)
    # an idle link banks no credit
    assert gcra_reserve(1000.0, 11.0, 50.0, 100) == (50.1, pytest.approx(0.1))
    assert gcra_reserve(0.0, 5.0, 50.0, 10**9) == (50.0, 0.0)


def test_shared_rate_is_shared_between_handles(tmp_path: Path) -> None:
    a = SharedRate.create(tmp_path / "j.rate", 1e6)
    b = SharedRate(tmp_path / "j.rate")
    assert b.rate == 1e6
    assert a.reserve(10_000) == 0.0  # 10 ms ahead: within the slack
    assert b.reserve(200_000) == pytest.approx(0.21, abs=0.02)  # sees a's reservation
    a.close()
    b.close()
    with pytest.raises(FileNotFoundError):
        SharedRate(tmp_path / "gone.rate")


@pytest.mark.parametrize(
    "progress", ["{not json", '{"state": "some-future-state"}', "[1, 2]", '{"errors": 5}']
)
def test_a_damaged_progress_file_restarts_the_job_instead_of_losing_it(
    tmp_path: Path, progress: str
) -> None:
    spec = PrefillSpec(tuple(PrefillFile(f"/v/t/{i}.m4s", 100) for i in range(3)), 1000, 1)
    job = Job("00112233aabbccdd", spec, 5.0)
    save_spec(tmp_path, job)
    (tmp_path / f"{job.id}.json").write_text(progress)
    (loaded,) = load_jobs(tmp_path)  # no exception: the supervisor starts
    assert loaded.id == job.id and loaded.state is JobState.QUEUED
    assert loaded.counts()["pending"] == 3  # from the start of its spec


def test_job_lifecycle_and_persistence(tmp_path: Path) -> None:
    spec = PrefillSpec(tuple(PrefillFile(f"/v/t/{i}.m4s", 100) for i in range(4)), 1000, 2)
    job = Job("0123456789abcdef", spec, time.time())
    job.set_state(JobState.RUNNING, 100.0)
    i0, i1 = job.take(), job.take()
    assert (i0, i1) == (0, 1) and job.counts()["in_flight"] == 2
    job.record(0, "stored", 100)
    job.record(1, "skipped", 0)
    i2 = job.take()
    assert i2 == 2 and job.retry(2, "worker down") is True  # back in the queue
    save_spec(tmp_path, job)
    save_progress(tmp_path, job.progress_json(101.0))
    (loaded,) = load_jobs(tmp_path)
    assert loaded.state is JobState.QUEUED  # a running job resumes
    assert loaded.counts() == {
        "total": 4,
        "done": 1,
        "failed": 0,
        "skipped": 1,
        "pending": 2,
        "in_flight": 0,
    }
    assert loaded.active_seconds == pytest.approx(1.0) and loaded.bytes_done == 100
    assert [loaded.take(), loaded.take(), loaded.take()] == [2, 3, None]
    for n in range(5):
        if not loaded.retry(2, f"down {n}"):
            break
    assert loaded.counts()["failed"] == 1 and loaded.errors == [("/v/t/2.m4s", "down 4")]


def test_title_index_counts_bytes_and_files() -> None:
    t = TitleIndex()
    t.change("/v/a/r/1.m4s", 10, 1)
    t.change("/v/a/r/2.m4s", 0, 1)
    t.change("/v/b/x.m4s", 5, 1)
    t.change("/v/a/r/2.m4s", 0, -1)
    t.change("/v/c/never.m4s", 7, -1)
    assert t.snapshot() == {"a": (10, 1), "b": (5, 1)}
    t.change("/v/a/r/1.m4s", 10, -1)
    assert t.snapshot() == {"b": (5, 1)}


def test_admin_input_rules() -> None:
    assert bearer_ok("Bearer secret-token", "secret-token")
    assert bearer_ok("bearer  secret-token", "secret-token")
    assert not bearer_ok("Bearer secret-tokeN", "secret-token")
    assert not bearer_ok("Basic secret-token", "secret-token")
    assert not bearer_ok(None, "secret-token") and not bearer_ok("Bearer ", "")
    cfg = PrefillConfig(default_rate=123_456, default_concurrency=3, max_concurrency=8)
    spec = parse_prefill({"objects": [{"path": "/v/a/b.m4s", "size": 5}], "concurrency": 64}, cfg)
    assert (spec.rate_bytes_per_s, spec.concurrency) == (123_456, 8)
    assert spec.files == (PrefillFile("/v/a/b.m4s", 5),)
    with pytest.raises(BadRequest, match="size"):
        parse_prefill({"objects": [{"path": "/v/a/b.m4s", "size": -1}]}, cfg)
    assert parse_purge({"prefixes": ["/v/abc/"]}) == ([], ["/v/abc/"])
    with pytest.raises(BadRequest):
        parse_purge({"prefixes": ["/v/bad id/"]})
    for trailing_newline in ("/v/abc\n", "/v/abc\n/x", "/v/abc/\n"):
        with pytest.raises(BadRequest):
            parse_purge({"prefixes": [trailing_newline]})
    with pytest.raises(BadRequest):
        parse_purge({"paths": ["/v/abc\n/x.m4s"]})
    assert decode_cursor(encode_cursor("/v/ä/x")) == "/v/ä/x"

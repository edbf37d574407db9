"""The admin API against a real appliance: auth, status, purge, contents, titles, drain."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from appliance.prefill_runner import MAX_UNFINISHED
from tests.support.appliance_proc import (
    ADMIN_TOKEN,
    Appliance,
    Upstream,
    run_appliance,
    start_appliance,
)


@pytest.fixture(scope="module")
def app(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    with run_appliance(module_tmp / "app", [upstream.base_url], workers=2) as a:
        yield a


def fetch(app: Appliance, key: str) -> requests.Response:
    r = requests.get(app.base_url + key, timeout=15)
    assert r.status_code == 200, r.text
    return r


def put_and_fetch(app: Appliance, upstream: Upstream, keys: list[str], size: int = 50_000) -> None:
    for k in keys:
        upstream.put(k, os.urandom(size))
        fetch(app, k)


AUTHED = [
    ("GET", "/admin/v1/status", None),
    ("POST", "/admin/v1/prefill", {"objects": [{"path": "/v/x/a.m4s"}]}),
    ("GET", "/admin/v1/prefill", None),
    ("GET", "/admin/v1/prefill/0123456789abcdef", None),
    ("DELETE", "/admin/v1/prefill/0123456789abcdef", None),
    ("POST", "/admin/v1/purge", {"prefixes": ["/v/"]}),
    ("GET", "/admin/v1/contents", None),
    ("GET", "/admin/v1/titles", None),
    ("POST", "/admin/v1/drain", None),
    ("POST", "/admin/v1/undrain", None),
]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
def test_wrong_or_missing_token_is_401_and_changes_nothing(
    app: Appliance, upstream: Upstream, token: str | None
) -> None:
    key = "/v/authcheck/r/seg-00001.m4s"
    put_and_fetch(app, upstream, [key])
    for method, path, body in AUTHED:
        status, answer = app.admin(method, path, body, token=token)
        assert status == 401, (method, path, status, answer)
        assert "token" in answer["error"]
    # the purge-everything and drain attempts changed nothing
    assert fetch(app, key).headers["Cache-Status"].startswith("vodedge; hit")
    assert requests.get(app.base_url + "/healthz", timeout=5).status_code == 200
    assert upstream.count(key) == 1
    status, jobs = app.admin("GET", "/admin/v1/prefill")
    assert status == 200 and jobs["jobs"] == []


def test_open_endpoints_need_no_token(app: Appliance) -> None:
    assert app.admin("GET", "/healthz", token=None) == (200, "serving\n")
    status, text = app.admin("GET", "/metrics", token=None)
    assert status == 200 and "vodedge_disk_capacity_bytes" in text
    assert "vodedge_workers_running 2.0" in text and "vodedge_start_time_seconds" in text
    status, doc = app.admin("GET", "/admin/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.")


def test_status_reports_disks_workers_and_hit_ratio(app: Appliance, upstream: Upstream) -> None:
    keys = [f"/v/statustitle/r/seg-{i:05d}.m4s" for i in range(4)]
    put_and_fetch(app, upstream, keys, size=100_000)
    for k in keys:
        fetch(app, k)  # 4 misses then 4 hits
    time.sleep(1.2)  # workers fold hot counters into metrics once a second
    status, st = app.admin("GET", "/admin/v1/status")
    assert status == 200
    assert st["state"] == "serving" and st["workers"] == {
        "configured": 2,
        "running": 2,
        "restarts": 0,
    }
    assert len(st["config_digest"]) == 16
    (disk,) = st["disks"]
    assert disk["healthy"] is True and disk["capacity_bytes"] == 64 * 2**20
    assert disk["objects"] >= 4 and disk["used_bytes"] >= 400_000
    ratio = st["hit_ratio"]["requests"]["1m"]
    assert ratio is not None and 0.3 <= ratio <= 0.75  # 4 of 8 in this test (plus others)
    assert st["hit_ratio"]["bytes"]["1m"] is not None
    assert st["prefill"] == {"active": 0, "jobs": []} or st["prefill"]["active"] == 0
    assert st["control_plane"]["configured"] is False


def test_purge_by_prefix_removes_one_title_only(app: Appliance, upstream: Upstream) -> None:
    a = [f"/v/purgea/r/seg-{i:05d}.m4s" for i in range(5)]
    b = [f"/v/purgeb/r/seg-{i:05d}.m4s" for i in range(3)]
    put_and_fetch(app, upstream, a + b, size=20_000)
    status, res = app.admin("POST", "/admin/v1/purge", {"prefixes": ["/v/purgea/"]})
    assert status == 200, res
    assert res == {"purged_objects": 5, "purged_bytes": 5 * 20_000}
    for k in a:
        assert fetch(app, k).headers["Cache-Status"].startswith("vodedge; fwd=miss")
        assert upstream.count(k) == 2
    for k in b:
        assert fetch(app, k).headers["Cache-Status"] == "vodedge; hit"
        assert upstream.count(k) == 1


def test_purge_by_paths(app: Appliance, upstream: Upstream) -> None:
    keys = [f"/v/purgep/r/seg-{i:05d}.m4s" for i in range(3)]
    put_and_fetch(app, upstream, keys, size=10_000)
    status, res = app.admin("POST", "/admin/v1/purge", {"paths": keys[:2]})
    assert status == 200 and res["purged_objects"] == 2
    assert fetch(app, keys[0]).headers["Cache-Status"].startswith("vodedge; fwd=miss")
    assert fetch(app, keys[2]).headers["Cache-Status"] == "vodedge; hit"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"paths": []},
        {"paths": ["/etc/passwd"]},
        {"paths": ["/v/../x"]},
        {"prefixes": ["/x/"]},
        {"prefixes": ["/v/a/../"]},
        {"paths": "x"},
        {"everything": True},
        [1, 2],
    ],
)
def test_purge_rejects_bad_input_with_400(app: Appliance, body: object) -> None:
    status, res = app.admin("POST", "/admin/v1/purge", body)
    assert status == 400 and res["error"]


def test_json_nested_too_deep_and_an_absurd_prefill_rate_are_400(app: Appliance) -> None:
    status, res = app.admin("POST", "/admin/v1/purge", json.loads("[" * 50 + "]" * 50))
    assert status == 400  # a list, not an object: the shape check
    r = requests.post(
        app.admin_url + "/admin/v1/purge",
        data="[" * 200_000 + "]" * 200_000,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]  # was a 500 (RecursionError)
    body = {"objects": [{"path": "/v/x/r/seg-00001.m4s"}], "rate_bytes_per_s": 10**400}
    status, res = app.admin("POST", "/admin/v1/prefill", body)
    assert status == 400 and "rate_bytes_per_s" in res["error"]  # was accepted, then looped


def test_contents_paginates_and_titles_summarise(app: Appliance, upstream: Upstream) -> None:
    keys = sorted(f"/v/listing/r/seg-{i:05d}.m4s" for i in range(7))
    put_and_fetch(app, upstream, keys, size=3_000)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = "/admin/v1/contents?prefix=/v/listing/&limit=3" + (
            f"&cursor={cursor}" if cursor else ""
        )
        status, page = app.admin("GET", q)
        assert status == 200, page
        pages += 1
        seen += [o["path"] for o in page["objects"]]
        for o in page["objects"]:
            assert o["size"] == 3_000 and o["content_type"] == "video/iso.segment"
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == keys and pages == 3
    status, titles = app.admin("GET", "/admin/v1/titles?limit=1000")
    assert status == 200
    by_id = {t["video_id"]: t for t in titles["titles"]}
    assert by_id["listing"] == {"video_id": "listing", "bytes": 21_000, "files": 7}
    assert app.admin("GET", "/admin/v1/contents?limit=0")[0] == 400
    assert app.admin("GET", "/admin/v1/contents?cursor=%%%")[0] == 400


def test_drain_flips_healthz_but_keeps_serving(app: Appliance, upstream: Upstream) -> None:
    key = "/v/draintitle/r/seg-00001.m4s"
    put_and_fetch(app, upstream, [key])
    try:
        status, res = app.admin("POST", "/admin/v1/drain")
        assert status == 200 and res == {"state": "draining"}
        for _ in range(4):  # every worker answers 503 (connections land on either)
            r = requests.get(app.base_url + "/healthz", timeout=5)
            assert r.status_code == 503 and "draining" in r.text
        assert app.admin("GET", "/healthz", token=None)[0] == 503
        assert fetch(app, key).status_code == 200
        assert app.admin("GET", "/admin/v1/status")[1]["state"] == "draining"
        assert app.metric("vodedge_draining") == 1
    finally:
        status, res = app.admin("POST", "/admin/v1/undrain")
    assert status == 200 and res == {"state": "serving"}
    for _ in range(4):
        assert requests.get(app.base_url + "/healthz", timeout=5).status_code == 200


def test_unknown_job_is_404(app: Appliance) -> None:
    assert app.admin("GET", "/admin/v1/prefill/0123456789abcdef")[0] == 404
    assert app.admin("GET", "/admin/v1/prefill/nothex")[0] == 404
    assert app.admin("DELETE", "/admin/v1/prefill/0123456789abcdef")[0] == 404


def test_an_unmounted_disk_is_taken_out_not_filled(module_tmp: Path, upstream: Upstream) -> None:
    var = module_tmp / "mnt"
    disks = [(str(var / "disk0"), "32MiB"), (str(var / "disk1"), "32MiB")]
    extra_line = "require_mount = true\n"
    with run_appliance(var, [upstream.base_url], workers=1, disks=disks) as a:
        pass  # both disks used: the baseline
    cfg = a.config.read_text().replace(
        f'path = "{var / "disk1"}"\n', f'path = "{var / "disk1"}"\n{extra_line}'
    )
    a.config.write_text(cfg)
    app2 = start_appliance(a.config, var, a.port, 1)
    try:
        _, st = app2.admin("GET", "/admin/v1/status")
        d0, d1 = st["disks"]
        assert d0["healthy"] is True and d1["healthy"] is False
        assert "not a mount point" in d1["error"]
        assert st["state"] == "serving"  # the other disk serves
        key = "/v/mnt/r/seg-00001.m4s"
        upstream.put(key, b"m" * 5000)
        assert fetch(app2, key).status_code == 200
        assert app2.metric("vodedge_disk_up", disk=str(var / "disk1")) == 0
    finally:
        app2.proc.stop()


def test_prefill_jobs_beyond_the_unfinished_limit_are_429(
    module_tmp: Path, upstream: Upstream
) -> None:
    # Outside its fill window every job waits, so they pile up unfinished: a one-minute window
    # two hours from now.
    a, b = (time.localtime(time.time() + s) for s in (7200, 7260))
    window = (
        f'[prefill]\nwindow = "{a.tm_hour:02d}:{a.tm_min:02d}-{b.tm_hour:02d}:{b.tm_min:02d}"\n'
    )
    with run_appliance(module_tmp / "jobs429", [upstream.base_url], workers=1, extra=window) as a:
        body = {"objects": [{"path": "/v/j429/r/seg-00001.m4s"}]}
        for _ in range(MAX_UNFINISHED):
            status, res = a.admin("POST", "/admin/v1/prefill", body)
            assert status == 202, res
        status, res = a.admin("POST", "/admin/v1/prefill", body)
        assert status == 429 and "unfinished" in res["error"]

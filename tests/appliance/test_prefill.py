"""Prefill jobs against a real appliance and a real upstream."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.appliance_proc import (
    Appliance,
    Upstream,
    kill_tree,
    run_appliance,
    start_appliance,
)

MiB = 2**20


def wait_job(
    app: Appliance, job_id: str, timeout: float = 30.0, state: str = "done"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = app.admin("GET", f"/admin/v1/prefill/{job_id}")
        assert status == 200, job
        if job["state"] == state:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def submit(app: Appliance, keys: list[str], **kw: Any) -> str:
    body = {"objects": [{"path": k} for k in keys], **kw}
    status, res = app.admin("POST", "/admin/v1/prefill", body)
    assert status == 202, res
    assert res["location"] == f"/admin/v1/prefill/{res['job_id']}"
    return str(res["job_id"])


def test_prefill_fetches_missing_files_and_skips_stored_ones(
    module_tmp: Path, upstream: Upstream
) -> None:
    keys = [f"/v/pf1/r/seg-{i:05d}.m4s" for i in range(6)]
    bodies = {k: os.urandom(200_000 + i) for i, k in enumerate(keys)}
    for k, b in bodies.items():
        upstream.put(k, b)
    with run_appliance(module_tmp / "a1", [upstream.base_url], workers=2) as app:
        for k in keys[:2]:  # already stored
            assert requests.get(app.base_url + k, timeout=10).status_code == 200
        job_id = submit(app, [*keys, keys[0]], concurrency=3, name="pf1")
        job = wait_job(app, job_id)
        assert job["files_total"] == 6  # the duplicate is folded
        assert (job["files_done"], job["files_skipped"], job["files_failed"]) == (4, 2, 0)
        assert job["bytes_done"] == sum(len(bodies[k]) for k in keys[2:])
        for k in keys:
            r = requests.get(app.base_url + k, timeout=10)
            assert r.headers["Cache-Status"] == "vodedge; hit" and r.content == bodies[k]
            assert upstream.count(k) == 1
        # a file the origin does not have fails with a reason; the job still finishes
        job_id = submit(app, ["/v/pf1/r/missing.m4s"])
        job = wait_job(app, job_id)
        assert job["files_failed"] == 1 and "404" in job["errors"][0]["error"]
        _status, listing = app.admin("GET", "/admin/v1/prefill")
        assert [j["job_id"] for j in listing["jobs"]][-1] == job_id
        assert app.metric("vodedge_prefill_files_total", result="stored") == 4


def test_prefill_admits_objects_the_admission_filter_would_refuse(
    module_tmp: Path, upstream: Upstream
) -> None:
    """A full cache refuses one-hit objects from players, never the files placement chose."""
    keys = [f"/v/pf2/r/seg-{i:05d}.m4s" for i in range(40)]
    for k in keys:
        upstream.put(k, os.urandom(MiB))
    # 16 MiB disk shared by 1 worker: 40 MiB of prefill must evict, and still store each file
    disks = [(str(module_tmp / "a2" / "disk0"), "16MiB")]
    with run_appliance(module_tmp / "a2", [upstream.base_url], workers=1, disks=disks) as app:
        job = wait_job(app, submit(app, keys, concurrency=2))
        assert job["files_done"] == 40 and job["files_failed"] == 0


def test_prefill_joins_a_player_fill_in_flight(module_tmp: Path, upstream: Upstream) -> None:
    key = "/v/pf3/r/seg-00001.m4s"
    body = os.urandom(3 * MiB)
    upstream.put(key, body)
    upstream.fault(key, "delay", 1000)
    with run_appliance(module_tmp / "a3", [upstream.base_url], workers=2) as app:
        got: dict[str, bytes] = {}

        def player() -> None:
            got["body"] = requests.get(app.base_url + key, timeout=20).content

        t = threading.Thread(target=player)
        t.start()
        time.sleep(0.3)  # the player's fill is waiting on the slow origin
        job = wait_job(app, submit(app, [key]))
        t.join()
        assert got["body"] == body
        assert job["files_done"] == 1, str(job)
        assert upstream.count(key) == 1  # one upstream fetch for player and prefill


def test_prefill_rate_is_within_ten_percent_of_the_cap(
    module_tmp: Path, upstream: Upstream
) -> None:
    keys = [f"/v/pf4/r/seg-{i:05d}.m4s" for i in range(12)]
    for k in keys:
        upstream.put(k, os.urandom(MiB))
    rate = 4 * MiB
    with run_appliance(module_tmp / "a4", [upstream.base_url], workers=2) as app:
        t0 = time.monotonic()
        job_id = submit(app, keys, rate_bytes_per_s=rate, concurrency=4)
        job = wait_job(app, job_id, timeout=30)
        elapsed = time.monotonic() - t0
    assert job["bytes_done"] == 12 * MiB
    wall_rate = job["bytes_done"] / elapsed
    assert 0.9 * rate <= job["measured_rate_bytes_per_s"] <= 1.1 * rate, job
    assert 0.85 * rate <= wall_rate <= 1.1 * rate, wall_rate  # includes polling slack


def test_player_fills_go_first(module_tmp: Path, upstream: Upstream) -> None:
    slow = "/v/pf5/r/slow.m4s"
    other = "/v/pf5/r/other.m4s"
    upstream.put(slow, os.urandom(MiB))
    upstream.put(other, os.urandom(MiB))
    upstream.fault(slow, "delay", 2000)
    with run_appliance(
        module_tmp / "a5",
        [upstream.base_url],
        workers=1,
        extra="[prefill]\npause_at_player_fills = 1\n",
    ) as app:
        t = threading.Thread(target=lambda: requests.get(app.base_url + slow, timeout=20))
        t.start()
        time.sleep(0.3)
        job_id = submit(app, [other])
        time.sleep(1.0)
        _, job = app.admin("GET", f"/admin/v1/prefill/{job_id}")
        assert job["files_done"] == 0 and upstream.count(other) == 0  # waiting for the player
        t.join()
        job = wait_job(app, job_id)
        assert job["files_done"] == 1


def test_jobs_resume_after_a_crash_and_can_be_cancelled(
    module_tmp: Path, upstream: Upstream
) -> None:
    keys = [f"/v/pf6/r/seg-{i:05d}.m4s" for i in range(10)]
    for k in keys:
        upstream.put(k, os.urandom(256 * 1024))
    var = module_tmp / "a6"
    with run_appliance(var, [upstream.base_url], workers=2) as app:
        job_id = submit(app, keys, rate_bytes_per_s=512 * 1024, concurrency=1)  # ~5 s
        time.sleep(2.5)
        _, before = app.admin("GET", f"/admin/v1/prefill/{job_id}")
        assert 1 <= before["files_done"] < 10, before
        kill_tree(app)
        app2 = start_appliance(app.config, var, app.port, 2)
        try:
            job = wait_job(app2, job_id, timeout=30)
            assert job["files_done"] + job["files_skipped"] == 10 and job["files_failed"] == 0
            assert sum(upstream.count(k) for k in keys) <= 11  # at most the one in flight again
            # cancel: a slow job stops fetching
            more = [f"/v/pf6/r/more-{i:05d}.m4s" for i in range(10)]
            for k in more:
                upstream.put(k, os.urandom(256 * 1024))
            job_id = submit(app2, more, rate_bytes_per_s=256 * 1024, concurrency=1)
            time.sleep(1.0)
            status, job = app2.admin("DELETE", f"/admin/v1/prefill/{job_id}")
            assert status == 200 and job["state"] == "cancelled"
            fetched = sum(upstream.count(k) for k in more)
            time.sleep(1.5)
            assert sum(upstream.count(k) for k in more) == fetched <= 2
        finally:
            app2.proc.stop()


def test_bad_prefill_requests_are_400(module_tmp: Path, upstream: Upstream) -> None:
    with run_appliance(module_tmp / "a7", [upstream.base_url], workers=1) as app:
        for body in (
            {},
            {"objects": []},
            {"objects": [{"path": "/etc/passwd"}]},
            {"objects": [{"path": "/t/tok/v/a/b.m4s"}]},
            {"objects": [{"path": "/v/a/b.m4s"}], "concurrency": 0},
            {"objects": [{"path": "/v/a/b.m4s"}], "rate_bytes_per_s": "fast"},
            {"objects": [{"path": "/v/a/b.m4s", "extra": 1}]},
        ):
            status, res = app.admin("POST", "/admin/v1/prefill", body)
            assert status == 400 and res["error"], body
        assert app.admin("GET", "/admin/v1/prefill")[1]["jobs"] == []


def test_jobs_wait_outside_the_fill_window(module_tmp: Path, upstream: Upstream) -> None:
    key = "/v/pf8/r/seg-00001.m4s"
    upstream.put(key, b"w" * 1000)
    lt = time.localtime()
    start = (lt.tm_hour + 12) % 24  # a one-hour window half a day away
    window = f'[prefill]\nwindow = "{start:02d}:00-{(start + 1) % 24:02d}:00"\n'
    with run_appliance(module_tmp / "a8", [upstream.base_url], workers=1, extra=window) as app:
        job_id = submit(app, [key])
        job = wait_job(app, job_id, timeout=10, state="waiting_window")
        time.sleep(0.5)
        assert upstream.count(key) == 0 and job["files_done"] == 0


def test_a_player_joining_a_slow_prefill_does_not_wait_out_its_rate_pause(
    module_tmp: Path, upstream: Upstream
) -> None:
    key = "/v/pf8/r/seg-00001.m4s"
    body = os.urandom(2 * MiB)
    upstream.put(key, body)
    with run_appliance(module_tmp / "a8", [upstream.base_url], workers=1) as app:
        job_id = submit(app, [key], rate_bytes_per_s=16 * 1024)  # ~2 min for this object
        deadline = time.monotonic() + 10
        while upstream.count(key) == 0:  # the prefill's fetch is under way (and pausing)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        r = requests.get(app.base_url + key, timeout=30)
        took = time.monotonic() - t0
        assert r.status_code == 200 and r.content == body
        assert upstream.count(key) == 1  # the player joined the prefill's fetch
        # Each read of the prefill pauses ~4 s or more at 16 KiB/s; the player cuts it short.
        assert took < 2.0, took
        wait_job(app, job_id)

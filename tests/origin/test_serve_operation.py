"""``vodedge-origin serve`` as systemd runs it, as a real process: READY=1 once it listens,
WATCHDOG=1 pings, ``/metrics`` after real object requests and a real upload (the catalog's
gauges included), STOPPING=1 and exit 0 on SIGTERM."""

from __future__ import annotations

import hashlib
import random
import signal
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.origin_proc import OriginProc, run_origin, write_object
from tests.support.sdnotify import notify_socket

TOKEN = "serve-token-0123456789"
SEGMENT = "/v/t1/h264-360p/seg-00001.m4s"
DATA = random.Random(11).randbytes(70_000)
UPLOAD = random.Random(12).randbytes(90_000)


def scrape(origin: OriginProc) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` (fetched without a token) by name and sorted labels."""
    r = requests.get(origin.base_url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def upload(origin: OriginProc, data: bytes) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"title": "T", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    created = requests.post(origin.base_url + "/api/v1/uploads", json=body, headers=auth)
    assert created.status_code == 201, created.text
    put = requests.put(origin.base_url + created.json()["upload_url"], data=data, headers=auth)
    assert put.status_code == 200, put.text
    answer: dict[str, object] = put.json()
    return answer


def test_serve_notifies_systemd_and_counts_what_it_did(tmp_path: Path) -> None:
    media = tmp_path / "media"
    write_object(media, SEGMENT, DATA)
    api = {"tokens": [TOKEN], "max_upload_size": "1MB"}
    with (
        notify_socket(tmp_path) as notify,
        run_origin(media, workdir=tmp_path / "origin", api=api, env=notify.env(0.4)) as origin,
    ):
        ready = notify.wait_for("READY=1")
        assert f"MAINPID={origin.proc.pid}" in ready
        assert f"STATUS=serving on 127.0.0.1:{origin.port}" in ready
        started = time.monotonic()
        for _ in range(3):
            notify.wait_for("WATCHDOG=1")
        assert time.monotonic() - started < 2.0  # every 0.2 s (WATCHDOG_USEC / 2)

        assert requests.get(origin.base_url + SEGMENT, timeout=10).content == DATA
        assert requests.get(origin.base_url + "/v/t1/nosuch.m4s", timeout=10).status_code == 404
        done = upload(origin, UPLOAD)
        too_big = {"title": "T", "size": 2_000_000, "sha256": "0" * 64}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = requests.post(origin.base_url + "/api/v1/uploads", json=too_big, headers=auth)
        assert r.status_code == 413

        got = scrape(origin)
        get = (("method", "GET"), ("route", "/v/{key}"))
        assert got["vodedge_origin_http_requests_total", (*get, ("status", "2xx"))] == 1
        assert got["vodedge_origin_http_requests_total", (*get, ("status", "4xx"))] == 1
        put = (("method", "PUT"), ("route", "/api/v1/uploads/{upload_id}"), ("status", "2xx"))
        assert got["vodedge_origin_http_requests_total", put] == 1
        assert got["vodedge_origin_served_bytes_total", ()] == len(DATA)
        assert got["vodedge_origin_upload_received_bytes_total", ()] == len(UPLOAD)
        assert got["vodedge_origin_uploads_refused_total", (("reason", "too_large"),)] == 1
        # the catalog, read at the scrape: the new video and its first job
        assert got["vodedge_origin_catalog_up", ()] == 1
        assert got["vodedge_origin_videos", (("status", "PENDING"),)] == 1
        assert got["vodedge_origin_videos", (("status", "READY"),)] == 0
        assert got["vodedge_origin_jobs", (("kind", "probe"), ("state", "queued"))] == 1
        assert got["vodedge_origin_jobs", (("kind", "package"), ("state", "leased"))] == 0
        assert got["vodedge_origin_queue_oldest_wait_seconds", ()] >= 0
        assert got["vodedge_origin_process_resident_memory_bytes", ()] > 0
        assert done["status"] == "complete"

        origin.proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING=1")
        assert "STATUS=stopping" in stopping
        assert origin.proc.wait(15) == 0

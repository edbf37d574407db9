"""``vodedge-origin worker`` as systemd runs it, as a real process: its own ``/metrics`` and
``/healthz`` listener (``--metrics-listen``), counters after real jobs (a probe that fails for
good, a webhook delivered), READY=1 / WATCHDOG=1 / STOPPING=1, and the ways it cannot start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from origin.catalog import PublishedFile
from origin.pipeline.jobs import notify_job
from tests.origin.pipeline.conftest import REPO, Origin, Receiver, make_origin
from tests.support.procs import free_port, http_ok
from tests.support.sdnotify import notify_socket

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def worker_argv(origin: Origin, *extra: str) -> list[str]:
    """The console script's command line (``vodedge-origin worker``), run from the source."""
    return [sys.executable, "-m", "origin.cli", "worker", "-c", str(origin.config_path), *extra]


def scrape(port: int) -> Samples:
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def jobs(samples: Samples, kind: str, outcome: str) -> float:
    return samples["vodedge_origin_worker_jobs_total", (("kind", kind), ("outcome", outcome))]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at the end is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(
    procs: list[subprocess.Popen[bytes]], argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    procs.append(proc)
    return proc


def test_worker_serves_metrics_and_notifies_systemd(
    tmp_path: Path,
    receiver: Receiver,
    bad_uploads: dict[str, Path],
    started: list[subprocess.Popen[bytes]],
) -> None:
    origin = make_origin(tmp_path, webhook_url=receiver.url)
    not_a_video = origin.add_video(bad_uploads["text"])
    with origin.catalog() as catalog:
        vid = catalog.create_video("Ready").video_id
        catalog.set_published(vid, [], [PublishedFile(f"/v/{vid}/master.m3u8", 10)])
        catalog.enqueue_many(vid, [notify_job(catalog.get_video(vid), max_attempts=1)])
    port = free_port()
    with notify_socket(tmp_path) as notify:
        argv = worker_argv(origin, "--metrics-listen", f"127.0.0.1:{port}")
        proc = start(started, argv, tmp_path / "worker.log", notify.env(watchdog_s=0.4))
        ready = notify.wait_for("READY=1")
        assert f"MAINPID={proc.pid}" in ready and "STATUS=running 1 job slots" in ready
        assert http_ok(f"http://127.0.0.1:{port}/healthz")
        deadline = time.monotonic() + 30
        while True:
            samples = scrape(port)
            if jobs(samples, "probe", "failed") and jobs(samples, "notify", "done"):
                break
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        assert origin.video(not_a_video).status == "FAILED"
        assert jobs(samples, "probe", "retried") == 0  # not a video: no second attempt
        assert jobs(samples, "encode_chunk", "done") == 0  # present before its first job
        deliveries = "vodedge_origin_worker_webhook_deliveries_total"
        assert samples[deliveries, (("outcome", "delivered"),)] == 1
        assert len(receiver.requests) == 1
        duration = "vodedge_origin_worker_job_duration_seconds_count"
        assert samples[duration, (("kind", "probe"),)] == 1
        assert samples["vodedge_origin_worker_jobs_running", ()] == 0
        assert samples["vodedge_origin_worker_tool_timeouts_total", (("kind", "probe"),)] == 0
        assert samples["vodedge_origin_process_cpu_seconds_total", ()] > 0
        notify.wait_for("WATCHDOG=1")

        proc.send_signal(signal.SIGTERM)
        assert "STATUS=stopping" in notify.wait_for("STOPPING=1")
        assert proc.wait(20) == 0


def test_a_taken_metrics_address_stops_the_start(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    origin = make_origin(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = worker_argv(origin, "--metrics-listen", f"127.0.0.1:{port}")
        proc = start(started, argv, tmp_path / "worker.log", {})
        assert proc.wait(30) == 1
    assert "cannot start: metrics listener" in (tmp_path / "worker.log").read_text()


@pytest.mark.parametrize("value", ["9210", "localhost:http", "[::1]:99999"])
def test_a_bad_metrics_address_is_a_usage_error(tmp_path: Path, value: str) -> None:
    origin = make_origin(tmp_path)
    r = subprocess.run(
        worker_argv(origin, "--metrics-listen", value),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--metrics-listen" in r.stderr, r.stderr

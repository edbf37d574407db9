"""The job queue across real processes on one database file (spawned, as workers would be).

Claims race for real here: SQLite's file locks, WAL and the busy timeout are what keep two
processes from taking the same job, so no threads or mocks stand in for them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from origin.catalog import JobSpec, SqliteCatalog

PROCESSES = 4
JOBS_PER_PROCESS = 200
SPAWN = multiprocessing.get_context("spawn")


def claimer(db: str, worker_id: str, start: Barrier, out: Any) -> None:
    """Claim and complete until the queue is empty; report what this worker did."""
    claimed: list[int] = []
    lost: list[int] = []
    with SqliteCatalog.open(db) as catalog:
        start.wait()
        while (job := catalog.claim(worker_id, lease_s=60)) is not None:
            claimed.append(job.job_id)
            if not catalog.complete(job.job_id, worker_id, {"by": worker_id}):
                lost.append(job.job_id)
            # A job takes a moment, as real ones do: without it, on a loaded machine one process
            # could drain all 800 before the others were scheduled ("no contention happened",
            # seen in CI runs), and the test would not have raced anything.
            time.sleep(0.002)
    out.put((worker_id, claimed, lost))


def test_every_job_goes_to_exactly_one_of_many_processes(db_path: Path) -> None:
    total = PROCESSES * JOBS_PER_PROCESS
    with SqliteCatalog.open(db_path) as catalog:
        for v in range(4):
            vid = catalog.create_video(f"Title {v}").video_id
            catalog.enqueue_many(
                vid, [JobSpec("encode_chunk", f"chunk-{i:04d}") for i in range(total // 4)]
            )
    start = SPAWN.Barrier(PROCESSES)
    out = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=claimer, args=(str(db_path), f"w{i}", start, out))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    claims = [job_id for _, claimed, _ in reports for job_id in claimed]
    assert sorted(claims) == sorted(set(claims)), "a job was claimed twice"
    assert len(claims) == total
    assert all(not lost for _, _, lost in reports)
    assert sum(1 for _, claimed, _ in reports if claimed) >= 2, "no contention happened"
    by_worker = {job_id: worker for worker, claimed, _ in reports for job_id in claimed}
    with SqliteCatalog.open(db_path) as catalog:
        for video in catalog.list_videos().videos:
            for job in catalog.list_jobs(video.video_id):
                assert (job.state, job.attempts) == ("done", 1)
                assert job.result == {"by": by_worker[job.job_id]}


def claim_and_hang(db: str, claimed: Event) -> None:
    with SqliteCatalog.open(db) as catalog:
        job = catalog.claim("doomed", lease_s=0.5)
        assert job is not None
        claimed.set()
        time.sleep(60)  # killed here, mid-job


def test_a_killed_workers_job_is_redone_by_another(db_path: Path) -> None:
    with SqliteCatalog.open(db_path) as catalog:
        vid = catalog.create_video("Crash").video_id
        catalog.enqueue(vid, JobSpec("encode_chunk", "chunk-0000"))
        claimed = SPAWN.Event()
        proc = SPAWN.Process(target=claim_and_hang, args=(str(db_path), claimed))
        proc.start()
        try:
            assert claimed.wait(timeout=30)
            assert catalog.claim("survivor") is None  # the lease still holds
        finally:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=10)
        deadline = time.monotonic() + 5
        while (job := catalog.claim("survivor")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job is not None and job.attempts == 2
        assert job.last_error == "lease of doomed expired"
        assert catalog.complete(job.job_id, "survivor", {"ok": True}) is True
        assert catalog.counts(vid)["encode_chunk"].done == 1

"""Faults on the control side that must not stop the box: a prefill runner that fails on a job,
a worker process that cannot be started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.listen import Listeners
from appliance.prefill import Job, JobState, PrefillFile, PrefillSpec
from appliance.workers import WorkerSet


def test_a_job_whose_runner_failed_ends_with_its_unfinished_files_failed() -> None:
    files = tuple(PrefillFile(f"/v/cf/r/seg-{i:05d}.m4s") for i in range(3))
    job = Job("j1", PrefillSpec(files, 1024, 1), 0.0)
    i = job.take()
    assert i is not None
    job.record(i, "stored", 10)
    job.fail_rest("internal error: OverflowError", 1.0)
    assert job.state is JobState.DONE and job.state.final  # not picked up again and again
    c = job.counts()
    assert (c["done"], c["failed"], c["pending"]) == (1, 2, 0)
    assert job.take() is None
    assert job.errors[0] == (files[1].path, "internal error: OverflowError")


def test_a_worker_that_cannot_be_started_is_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners = Listeners([("127.0.0.1", 0)], 1)
    listeners.open()
    try:
        workers = WorkerSet(1, listeners, tmp_path, tmp_path / "config.json", 1.0, tmp_path)

        def no_memory(*_: object, **__: object) -> None:  # forced fault
            raise OSError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(subprocess, "Popen", no_memory)
        workers.start_all()  # no exception: the supervisor's loop must live on
        w = workers.workers[0]
        assert w.proc is None and w.restart_at is not None and w.restarts == 1
        workers.poll()  # inside the back-off: nothing happens
        assert w.restarts == 1
        w.restart_at = 0.0
        workers.poll()  # the back-off passed: tried again (and failed again)
        assert w.restarts == 2 and w.restart_at > 0.0
    finally:
        listeners.close()

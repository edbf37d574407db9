"""The worker loop in-process, on a real SQLite file, with stand-in stages that force each
branch: a lost lease, a refused completion, failures, tool timeouts, shutdown within and past
its grace, ``once`` waiting for a job leased elsewhere, and parallel slots; each branch moves
its own counter of the worker's metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from origin.catalog import Job, JobSpec, PublishedFile, RetryPolicy, SqliteCatalog
from origin.config import OriginConfig, PipelineConfig, WebhookConfig
from origin.media.tools import Tools, ToolTimeout
from origin.metrics.worker import JobOutcome, WorkerMetrics
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import KINDS, notify_job
from origin.pipeline.stage import Context, Done, Stage
from origin.pipeline.worker import STAGES, Worker
from origin.storage import LocalStorage
from tests.origin.pipeline.conftest import Receiver

LEASE_S = 0.3


class Clock:
    """Real time, plus whatever a test adds (a worker 'paused' past its lease)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Rig:
    catalog: SqliteCatalog
    clock: Clock
    cfg: OriginConfig
    storage: LocalStorage
    tools: Tools
    tmp: Path
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    """The metrics of the last worker made."""

    def worker(self, stages: Mapping[str, Stage], *, once: bool = False, slots: int = 1) -> Worker:
        cfg = replace(self.cfg, pipeline=replace(self.cfg.pipeline, concurrency=slots))
        self.registry = CollectorRegistry()
        metrics = WorkerMetrics(self.registry, stages)
        return Worker(
            cfg,
            self.catalog,
            self.storage,
            self.tools,
            name="test:1",
            once=once,
            stages=stages,
            metrics=metrics,
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(f"vodedge_origin_worker_{name}", labels)

    def jobs(self, kind: str, outcome: JobOutcome) -> float | None:
        return self.sample("jobs_total", kind=kind, outcome=outcome)

    def enqueue(self, *kinds: str) -> list[Job]:
        vid = self.catalog.create_video("T").video_id
        return self.catalog.enqueue_many(vid, [JobSpec(k, k) for k in kinds])


@pytest.fixture
async def rig(tmp_path: Path, tools: Tools) -> AsyncIterator[Rig]:
    clock = Clock()
    pipeline = PipelineConfig(work_dir=tmp_path / "work", lease_s=LEASE_S, poll_s=0.02)
    cfg = OriginConfig(pipeline=pipeline)
    catalog = SqliteCatalog.open(
        tmp_path / "catalog.db", now=clock, retry=RetryPolicy(base_s=0.05, max_s=0.1)
    )
    try:
        yield Rig(catalog, clock, cfg, LocalStorage(tmp_path / "media"), tools, tmp_path)
    finally:
        catalog.close()


async def run_once(worker: Worker) -> None:
    """Run a ``once`` worker until the queue has nothing left for it."""
    async with asyncio.timeout(10):
        await worker.run(asyncio.Event(), asyncio.Event())


async def test_a_lost_lease_cancels_the_stage_and_records_nothing(rig: Rig) -> None:
    calls: list[int] = []
    cancelled = asyncio.Event()

    async def stage(ctx: Context, job: Job) -> Done:
        calls.append(job.attempts)
        if job.attempts == 1:
            rig.clock.offset += 60  # as if this worker had been paused past its lease
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return Done({"attempt": job.attempts})

    [job] = rig.enqueue("probe")
    worker = rig.worker({"probe": stage}, once=True)
    await run_once(worker)
    assert cancelled.is_set()
    assert calls == [1, 2]  # the expired lease was claimed again (here, by the same worker)
    done = rig.catalog.get_job(job.job_id)
    assert done.result == {"attempt": 2}
    assert [e["error"] for e in done.error_log] == ["lease of test:1:0 expired"]
    assert (worker.stats.lost, worker.stats.done) == (1, 1)
    assert (rig.jobs("probe", "lost_lease"), rig.jobs("probe", "done")) == (1, 1)
    assert rig.sample("job_duration_seconds_count", kind="probe") == 2
    assert rig.sample("jobs_running") == 0


async def test_a_refused_completion_removes_the_outputs(rig: Rig) -> None:
    made: list[Path] = []

    async def stage(ctx: Context, job: Job) -> Done:
        out = rig.tmp / f"staging-{job.attempts}"
        out.mkdir()
        (out / "master.m3u8").write_text("#EXTM3U\n")
        made.append(out)
        if job.attempts == 1:
            rig.clock.offset += 60  # the lease ran out just before the completion
        return Done({}, undo=(out,))

    [job] = rig.enqueue("package")
    worker = rig.worker({"package": stage}, once=True)
    await run_once(worker)
    assert [p.exists() for p in made] == [False, True]
    assert rig.catalog.get_job(job.job_id).attempts == 2
    assert worker.stats.lost == 1
    assert (rig.jobs("package", "lost_lease"), rig.jobs("package", "done")) == (1, 1)


async def test_failures_are_recorded_as_classified(rig: Rig) -> None:
    async def rejected(ctx: Context, job: Job) -> Done:
        raise Rejected("the file holds audio only")

    async def buggy(ctx: Context, job: Job) -> Done:
        raise RuntimeError("a bug")

    [bad] = rig.enqueue("probe")
    [flaky] = rig.enqueue("analyse")
    worker = rig.worker({"probe": rejected, "analyse": buggy}, once=True)
    await run_once(worker)  # once: ends when nothing is left
    bad_job, flaky_job = rig.catalog.get_job(bad.job_id), rig.catalog.get_job(flaky.job_id)
    assert (bad_job.state, bad_job.attempts) == ("failed", 1)
    assert rig.catalog.get_video(bad.video_id).failure_reason == (
        "probe probe failed: the file holds audio only"
    )
    assert (flaky_job.state, flaky_job.attempts) == ("failed", 3)
    assert [e["error"] for e in flaky_job.error_log] == ["RuntimeError: a bug"] * 3
    assert rig.catalog.get_video(flaky.video_id).status == "FAILED"
    assert (worker.stats.failed, worker.stats.retried) == (2, 2)
    assert (rig.jobs("probe", "failed"), rig.jobs("probe", "retried")) == (1, 0)
    assert (rig.jobs("analyse", "failed"), rig.jobs("analyse", "retried")) == (1, 2)
    assert rig.sample("tool_timeouts_total", kind="analyse") == 0


async def test_tool_timeouts_are_counted_by_the_kind_that_ran_them(rig: Rig) -> None:
    async def slow(ctx: Context, job: Job) -> Done:
        if job.attempts == 1:
            raise ToolTimeout("encode h264-360p chunk 3", 5.0)
        return Done({})

    [job] = rig.enqueue("encode_chunk")
    worker = rig.worker({"encode_chunk": slow}, once=True)
    await run_once(worker)
    [error] = rig.catalog.get_job(job.job_id).error_log
    assert error["error"] == "encode h264-360p chunk 3 failed: timed out after 5 s"
    assert rig.sample("tool_timeouts_total", kind="encode_chunk") == 1
    assert (rig.jobs("encode_chunk", "retried"), rig.jobs("encode_chunk", "done")) == (1, 1)


async def test_shutdown_lets_the_running_job_finish_and_claims_no_more(rig: Rig) -> None:
    started = asyncio.Event()

    running: list[float | None] = []

    async def stage(ctx: Context, job: Job) -> Done:
        started.set()
        running.append(rig.sample("jobs_running"))
        await asyncio.sleep(LEASE_S * 2)  # outlives one lease: the keeper must extend it
        return Done({"ok": True})

    first, second = rig.enqueue("probe")[0], rig.enqueue("probe")[0]
    worker = rig.worker({"probe": stage})
    stop, hurry = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop, hurry, grace_s=5))
    await started.wait()
    stop.set()
    await task
    assert rig.catalog.get_job(first.job_id).state == "done"
    assert rig.catalog.get_job(second.job_id).state == "queued"
    assert (running, rig.sample("jobs_running"), rig.jobs("probe", "done")) == ([1], 0, 1)


@pytest.mark.parametrize("hurried", [False, True])
async def test_shutdown_cancels_a_job_past_the_grace(rig: Rig, hurried: bool) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stage(ctx: Context, job: Job) -> Done:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Done({})

    [job] = rig.enqueue("probe")
    worker = rig.worker({"probe": stage})
    stop, hurry = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop, hurry, grace_s=30 if hurried else 0.2))
    await started.wait()
    stop.set()
    if hurried:
        hurry.set()  # a second SIGTERM
    async with asyncio.timeout(5):
        await task
    assert cancelled.is_set()
    left = rig.catalog.get_job(job.job_id)
    # Given back at once, without spending the attempt: the next worker starts it as attempt 1.
    assert (left.state, left.lease_owner, left.attempts) == ("queued", None, 0)
    assert worker.stats.done == worker.stats.lost == 0
    assert rig.jobs("probe", "released_on_shutdown") == 1
    assert sum(rig.jobs("probe", o) or 0 for o in ("done", "lost_lease", "retried")) == 0
    again = rig.catalog.claim("next:1:0")
    assert again is not None and (again.job_id, again.attempts) == (job.job_id, 1)


async def test_once_waits_for_a_job_leased_by_another_worker(rig: Rig) -> None:
    async def stage(ctx: Context, job: Job) -> Done:
        return Done({"by": "us"})

    [job] = rig.enqueue("probe")
    assert rig.catalog.claim("elsewhere:1:0", lease_s=0.5) is not None  # and it dies
    worker = rig.worker({"probe": stage}, once=True)
    started = time.monotonic()
    await run_once(worker)
    assert time.monotonic() - started >= 0.4
    done = rig.catalog.get_job(job.job_id)
    assert (done.state, done.attempts, done.result) == ("done", 2, {"by": "us"})


async def test_slots_run_jobs_in_parallel_with_their_own_ids(rig: Rig) -> None:
    both = asyncio.Barrier(2)
    owners: list[str | None] = []

    async def stage(ctx: Context, job: Job) -> Done:
        owners.append(rig.catalog.get_job(job.job_id).lease_owner)
        async with asyncio.timeout(5):
            await both.wait()  # only returns if the other slot runs at the same time
        return Done({})

    rig.enqueue("encode_chunk", "encode_audio")
    worker = rig.worker({"encode_chunk": stage, "encode_audio": stage}, once=True, slots=2)
    await run_once(worker)
    assert sorted(owners, key=str) == ["test:1:0", "test:1:1"]
    assert worker.stats.done == 2


async def test_kinds_it_does_not_run_are_left_alone(rig: Rig) -> None:
    [job] = rig.enqueue("transmogrify")
    worker = rig.worker(STAGES, once=True)
    await run_once(worker)  # once: nothing of its kinds is left, so it ends
    assert rig.catalog.get_job(job.job_id).state == "queued"


async def test_a_webhook_that_fails_is_counted_and_the_title_stays_ready(
    rig: Rig, receiver: Receiver
) -> None:
    receiver.status = 503
    webhook = WebhookConfig(url=receiver.url, token="t", timeout_s=1.0, attempts=2)
    rig.cfg = replace(rig.cfg, webhook=webhook)
    vid = rig.catalog.create_video("T").video_id
    rig.catalog.set_published(vid, [], [PublishedFile(f"/v/{vid}/master.m3u8", 10)])
    video = rig.catalog.get_video(vid)
    [job] = rig.catalog.enqueue_many(vid, [notify_job(video, max_attempts=1)])
    worker = rig.worker({"notify": STAGES["notify"]}, once=True)
    await run_once(worker)
    assert len(receiver.requests) == 2
    done = rig.catalog.get_job(job.job_id)
    assert done.state == "done"
    assert done.result == {
        "delivered": False, "attempts": 2, "status": 503, "error": "answered 503"
    }  # fmt: skip
    assert rig.catalog.get_video(vid).status == "READY"
    assert worker.stats.webhook_failures == 1
    assert rig.sample("webhook_deliveries_total", outcome="gave_up") == 1
    assert rig.sample("webhook_deliveries_total", outcome="delivered") == 0


def test_the_worker_runs_every_kind_of_the_pipeline() -> None:
    assert tuple(STAGES) == KINDS


async def test_a_claim_that_lands_after_stop_gives_the_job_back(rig: Rig) -> None:
    (job,) = rig.enqueue("probe")
    ran: list[int] = []

    async def stage(ctx: Context, j: Job) -> Done:
        ran.append(j.job_id)
        return Done({"ok": True})

    worker = rig.worker({"probe": stage})
    stop, hurry = asyncio.Event(), asyncio.Event()
    claim = rig.catalog.claim
    loop = asyncio.get_running_loop()

    def claim_while_stopping(*args: object, **kw: object) -> Job | None:
        got = claim(*args, **kw)  # type: ignore[arg-type]
        loop.call_soon_threadsafe(stop.set)  # SIGTERM while the claim is in its thread
        return got

    rig.catalog.claim = claim_while_stopping  # type: ignore[method-assign]
    async with asyncio.timeout(10):
        await worker.run(stop, hurry, grace_s=5)
    assert ran == []  # no new job after stop
    back = rig.catalog.get_job(job.job_id)
    assert back.state == "queued" and back.attempts == 0  # its attempt not spent

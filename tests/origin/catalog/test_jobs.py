"""The job queue in one process: idempotent enqueue, leases on a hand-moved clock, retries."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from origin.catalog import Conflict, Invalid, Job, JobCounts, JobSpec, NotFound, SqliteCatalog
from tests.origin.catalog.conftest import Clock

LEASE = 30.0


@pytest.fixture
def vid(catalog: SqliteCatalog) -> str:
    return catalog.create_video("Jobs", video_id="vid").video_id


@pytest.fixture
def held(catalog: SqliteCatalog, vid: str) -> Job:
    """One chunk job, claimed by w1 with a lease of LEASE seconds."""
    catalog.enqueue_many(vid, chunks(1))
    job = catalog.claim("w1", lease_s=LEASE)
    assert job is not None
    return job


def chunks(n: int, rung: str = "h264-720p") -> list[JobSpec]:
    return [JobSpec("encode_chunk", f"encode:{rung}:chunk-{i:04d}", {"chunk": i}) for i in range(n)]


def test_enqueue_is_idempotent_by_key(catalog: SqliteCatalog, vid: str) -> None:
    first = catalog.enqueue_many(vid, chunks(3))
    again = catalog.enqueue_many(vid, chunks(4))
    assert again[:3] == first
    assert len(catalog.list_jobs(vid)) == 4
    assert first[0].state == "queued" and first[0].payload == {"chunk": 0}
    with pytest.raises(Conflict):
        catalog.enqueue(vid, JobSpec("encode_chunk", first[0].key, {"chunk": 99}))
    with pytest.raises(Conflict):
        catalog.enqueue(vid, JobSpec("package", first[0].key, {"chunk": 0}))
    with pytest.raises(Invalid):
        catalog.enqueue(vid, JobSpec("probe", "probe", max_attempts=0))
    # The same key under another video is other work.
    other = catalog.create_video("Other").video_id
    assert catalog.enqueue(other, chunks(1)[0]).job_id != first[0].job_id


def test_claim_hands_out_oldest_first_and_each_once(
    catalog: SqliteCatalog, vid: str, clock: Clock
) -> None:
    catalog.enqueue_many(vid, chunks(2))
    a = catalog.claim("w1", lease_s=LEASE)
    b = catalog.claim("w2", lease_s=LEASE)
    assert a is not None and b is not None
    assert (a.key, b.key) == ("encode:h264-720p:chunk-0000", "encode:h264-720p:chunk-0001")
    assert (a.state, a.lease_owner, a.lease_expires_at, a.attempts) == (
        "leased",
        "w1",
        clock.now + LEASE,
        1,
    )
    assert catalog.claim("w3") is None


def test_claim_by_kind(catalog: SqliteCatalog, vid: str) -> None:
    catalog.enqueue_many(vid, [*chunks(1), JobSpec("thumbnails", "thumbs")])
    job = catalog.claim("w1", kinds=["thumbnails", "package"])
    assert job is not None and job.kind == "thumbnails"
    assert catalog.claim("w1", kinds=["package"]) is None
    bad_kinds: list[Sequence[str]] = [[], "thumbnails"]  # a str is a sequence, but not of kinds
    for bad in bad_kinds:
        with pytest.raises(Invalid):
            catalog.claim("w1", kinds=bad)
    with pytest.raises(Invalid):
        catalog.claim("", kinds=None)


def test_an_expired_lease_moves_to_another_worker_and_the_first_cannot_finish(
    catalog: SqliteCatalog, held: Job, clock: Clock
) -> None:
    first = held
    clock.advance(LEASE - 1)
    assert catalog.claim("w2") is None  # still leased
    clock.advance(1)
    second = catalog.claim("w2", lease_s=LEASE)
    assert second is not None and second.job_id == first.job_id
    assert second.attempts == 2 and second.last_error == "lease of w1 expired"
    assert catalog.complete(first.job_id, "w1", {"by": "w1"}) is False
    assert catalog.extend(first.job_id, "w1", LEASE) is False
    assert catalog.fail(first.job_id, "w1", "late") is None
    assert catalog.complete(second.job_id, "w2", {"by": "w2"}) is True
    assert catalog.complete(second.job_id, "w2", {"by": "w2"}) is False  # done is done
    done = catalog.get_job(first.job_id)
    assert (done.state, done.result, done.lease_owner) == ("done", {"by": "w2"}, None)


def test_an_expired_lease_is_lost_even_before_anyone_takes_it(
    catalog: SqliteCatalog, held: Job, clock: Clock
) -> None:
    job = held
    clock.advance(LEASE)
    assert catalog.complete(job.job_id, "w1") is False
    assert catalog.get_job(job.job_id).state == "leased"


def test_extend_keeps_the_lease(catalog: SqliteCatalog, held: Job, clock: Clock) -> None:
    job = held
    for _ in range(5):
        clock.advance(LEASE - 5)
        assert catalog.extend(job.job_id, "w1", LEASE) is True
        assert catalog.claim("w2") is None
    assert catalog.extend(job.job_id, "w2", LEASE) is False  # not the owner
    assert catalog.get_job(job.job_id).lease_expires_at == clock.now + LEASE
    assert catalog.complete(job.job_id, "w1", {"ok": 1}) is True


def test_failures_back_off_then_fail_the_job_and_the_video(
    catalog: SqliteCatalog, vid: str, clock: Clock
) -> None:
    [spec] = chunks(1)
    catalog.enqueue(vid, spec)
    for attempt, delay in ((1, 10.0), (2, 20.0)):
        job = catalog.claim("w1")
        assert job is not None and job.attempts == attempt
        retried = catalog.fail(job.job_id, "w1", f"ffmpeg exited 1 (try {attempt})")
        assert retried is not None
        assert (retried.state, retried.not_before) == ("queued", clock.now + delay)
        clock.advance(delay - 1)
        assert catalog.claim("w1") is None  # backing off
        clock.advance(1)
    job = catalog.claim("w1")
    assert job is not None and job.attempts == 3
    failed = catalog.fail(job.job_id, "w1", "ffmpeg exited 1 (try 3)")
    assert failed is not None and failed.state == "failed"
    assert [e["error"] for e in failed.error_log] == [
        f"ffmpeg exited 1 (try {i})" for i in (1, 2, 3)
    ]
    assert [e["attempt"] for e in failed.error_log] == [1, 2, 3]
    assert failed.last_error == "ffmpeg exited 1 (try 3)"
    video = catalog.get_video(vid)
    assert video.status == "FAILED"
    assert video.failure_reason == f"encode_chunk {spec.key} failed: ffmpeg exited 1 (try 3)"
    clock.advance(1000)
    assert catalog.claim("w1") is None


def test_permanent_failure_skips_retries_and_stops_the_titles_other_work(
    catalog: SqliteCatalog, vid: str
) -> None:
    catalog.enqueue_many(vid, [JobSpec("probe", "probe"), *chunks(2)])
    probe = catalog.claim("w1")
    assert probe is not None
    failed = catalog.fail(probe.job_id, "w1", "not a video: no video stream", permanent=True)
    assert failed is not None and (failed.state, failed.attempts) == ("failed", 1)
    assert (
        catalog.get_video(vid).failure_reason == "probe probe failed: not a video: no video stream"
    )
    assert catalog.claim("w2") is None  # the chunks of a FAILED video are not handed out
    catalog.rerun(vid, keep_done=True)
    reset = catalog.list_jobs(vid)
    assert [(j.state, j.attempts) for j in reset] == [("queued", 0)] * 3
    assert len(reset[0].error_log) == 1  # history is kept
    again = catalog.claim("w2")
    assert again is not None and again.key == "probe"


def test_a_job_that_keeps_killing_workers_fails(
    catalog: SqliteCatalog, vid: str, clock: Clock
) -> None:
    catalog.enqueue(vid, JobSpec("encode_chunk", "k", max_attempts=2))
    for worker in ("w1", "w2"):
        assert catalog.claim(worker, lease_s=LEASE) is not None
        clock.advance(LEASE)  # the worker died: no extend, no complete
    assert catalog.claim("w3") is None
    job = catalog.get_job(1)
    assert job.state == "failed"
    assert [e["error"] for e in job.error_log] == ["lease of w1 expired", "lease of w2 expired"]
    assert catalog.get_video(vid).status == "FAILED"


def test_a_job_of_a_ready_video_fails_without_unpublishing_it(
    catalog: SqliteCatalog, vid: str
) -> None:
    from tests.origin.catalog.test_videos import RENDITIONS, files

    catalog.enqueue(vid, JobSpec("notify", "notify"))
    catalog.set_published(vid, RENDITIONS, files(vid))
    job = catalog.claim("w1")
    assert job is not None
    catalog.fail(job.job_id, "w1", "webhook down", permanent=True)
    assert catalog.get_video(vid).status == "READY"


def test_complete_enqueues_the_next_stage_atomically(catalog: SqliteCatalog, vid: str) -> None:
    catalog.enqueue(vid, JobSpec("analyse", "analyse"))
    job = catalog.claim("w1")
    assert job is not None
    bad = [*chunks(2), JobSpec("encode_chunk", "x", max_attempts=0)]
    with pytest.raises(Invalid):
        catalog.complete(job.job_id, "w1", {"ladder": []}, then=bad)
    assert catalog.get_job(job.job_id).state == "leased"
    assert catalog.complete(job.job_id, "w1", {"ladder": ["720p"]}, then=chunks(2))
    assert [j.kind for j in catalog.list_jobs(vid)] == ["analyse", "encode_chunk", "encode_chunk"]


def test_the_last_job_of_a_stage_enqueues_the_next(catalog: SqliteCatalog, vid: str) -> None:
    catalog.enqueue_many(vid, [*chunks(2), JobSpec("encode_audio", "audio")])
    package = [JobSpec("package", "package")]
    fan_in = ["encode_chunk", "encode_audio"]
    for _ in range(3):
        assert not any(j.kind == "package" for j in catalog.list_jobs(vid))
        job = catalog.claim("w1")
        assert job is not None
        assert catalog.complete(job.job_id, "w1", then=package, when_all_done=fan_in)
    assert [j.kind for j in catalog.list_jobs(vid)][-1] == "package"
    assert len(catalog.list_jobs(vid)) == 4


def test_counts_and_all_done_drive_the_stages(catalog: SqliteCatalog, vid: str) -> None:
    assert catalog.counts(vid) == {}
    assert catalog.all_done(vid, "encode_chunk") is False  # nothing enqueued is not done
    catalog.enqueue_many(vid, [*chunks(3), JobSpec("audio", "audio")])
    for _ in range(3):
        job = catalog.claim("w1", kinds=["encode_chunk"])
        assert job is not None
        assert catalog.all_done(vid, "encode_chunk") is False
        catalog.complete(job.job_id, "w1")
    assert catalog.all_done(vid, "encode_chunk") is True
    assert catalog.all_done(vid, "audio") is False
    assert catalog.claim("w1") is not None
    counts = catalog.counts(vid)
    assert counts == {"audio": JobCounts(leased=1), "encode_chunk": JobCounts(done=3)}
    assert JobCounts.sum(counts.values()).total == 4


def test_unknown_job(catalog: SqliteCatalog) -> None:
    with pytest.raises(NotFound):
        catalog.get_job(12345)
    assert catalog.complete(12345, "w1") is False


def test_threads_may_share_one_catalog(catalog: SqliteCatalog, vid: str) -> None:
    catalog.enqueue_many(vid, chunks(200))

    def work(worker: str) -> list[int]:
        done = []
        while (job := catalog.claim(worker)) is not None:
            assert catalog.complete(job.job_id, worker)
            done.append(job.job_id)
        return done

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, [f"t{i}" for i in range(4)]))
    claimed = [job_id for done in results for job_id in done]
    assert sorted(claimed) == [j.job_id for j in catalog.list_jobs(vid)]
    assert catalog.all_done(vid, "encode_chunk")


def test_pending_jobs_counts_what_is_left_to_run(
    catalog: SqliteCatalog, vid: str, clock: Clock
) -> None:
    assert catalog.pending_jobs() == 0
    catalog.enqueue_many(vid, chunks(3))
    job = catalog.claim("w1", lease_s=LEASE)
    assert job is not None
    catalog.fail(job.job_id, "w1", "flaky")  # queued again, not due before the back-off
    assert catalog.claim("w1", lease_s=LEASE) is not None
    assert catalog.pending_jobs() == 3  # one leased, one due, one backing off
    other = catalog.create_video("Broken").video_id
    catalog.enqueue_many(other, chunks(2))
    third = catalog.claim("w2", lease_s=LEASE)
    assert third is not None and third.video_id == vid
    assert catalog.pending_jobs() == 5
    catalog.set_status(other, "FAILED", "bad upload")
    assert catalog.pending_jobs() == 3  # a FAILED video's jobs are never handed out
    for j in catalog.list_jobs(vid):
        if j.state == "leased":
            assert catalog.complete(j.job_id, str(j.lease_owner))
    assert catalog.pending_jobs() == 1
    clock.advance(1000)
    last = catalog.claim("w1", lease_s=LEASE)
    assert last is not None and catalog.complete(last.job_id, "w1")
    assert catalog.pending_jobs() == 0
    catalog.enqueue(vid, JobSpec("transcribe", "transcribe"))
    assert catalog.pending_jobs() == 1
    assert catalog.pending_jobs(["encode_chunk", "package"]) == 0
    with pytest.raises(Invalid):
        catalog.pending_jobs([])


def test_release_gives_a_held_job_back_without_spending_the_attempt(
    catalog: SqliteCatalog, vid: str, clock: Clock
) -> None:
    [job] = catalog.enqueue_many(vid, [JobSpec("probe", "probe", max_attempts=1)])
    claimed = catalog.claim("w1", lease_s=10)
    assert claimed is not None and claimed.attempts == 1
    assert not catalog.release(job.job_id, "someone-else")
    assert catalog.release(job.job_id, "w1")
    assert not catalog.release(job.job_id, "w1")  # no longer held
    left = catalog.get_job(job.job_id)
    assert (left.state, left.attempts, left.lease_owner) == ("queued", 0, None)
    again = catalog.claim("w2", lease_s=10)  # a max_attempts=1 job can still run once
    assert again is not None and again.attempts == 1 and again.lease_owner == "w2"
    clock.advance(11)
    assert not catalog.release(job.job_id, "w2")  # an expired lease is not held

"""Resumable uploads: bytes recorded in order, completion creates the video and its first jobs."""

from __future__ import annotations

import hashlib

import pytest

from origin.catalog import Conflict, Invalid, JobSpec, NotFound, SqliteCatalog
from tests.origin.catalog.conftest import Clock

DATA = b"x" * 1000
SHA = hashlib.sha256(DATA).hexdigest()
PROBE = JobSpec("probe", "probe", {"source": "src/u.mp4"})


def test_bytes_arrive_in_order_and_resume_from_received(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    upload = catalog.create_upload(
        len(DATA), title="Upload", tags=["t"], sha256=SHA, temp_path="/tmp/u"
    )
    assert (upload.status, upload.received, upload.video_id) == ("open", 0, None)
    clock.advance(1)
    upload = catalog.add_upload_bytes(upload.upload_id, 0, 400)
    assert upload.received == 400 and upload.updated_at == clock.now
    # The connection dropped; the client asks where to resume and must send from there.
    with pytest.raises(Conflict, match="send from byte 400"):
        catalog.add_upload_bytes(upload.upload_id, 600, 100)
    with pytest.raises(Conflict):
        catalog.add_upload_bytes(upload.upload_id, 0, 400)
    with pytest.raises(Invalid):
        catalog.add_upload_bytes(upload.upload_id, 400, 601)  # past the declared size
    assert catalog.get_upload(upload.upload_id).received == 400
    assert catalog.add_upload_bytes(upload.upload_id, 400, 600).received == len(DATA)


def test_complete_creates_the_video_and_enqueues_atomically(catalog: SqliteCatalog) -> None:
    upload = catalog.create_upload(len(DATA), title="Up", description="d", temp_path="/tmp/u")
    with pytest.raises(Conflict, match="0 of 1000"):
        catalog.complete_upload(upload.upload_id, sha256=SHA, source_path="src/u.mp4")
    catalog.add_upload_bytes(upload.upload_id, 0, len(DATA))
    video = catalog.complete_upload(
        upload.upload_id, sha256=SHA, source_path="src/u.mp4", jobs=[PROBE]
    )
    assert (video.status, video.title, video.description) == ("PENDING", "Up", "d")
    assert video.source_path == "src/u.mp4"
    assert [j.key for j in catalog.list_jobs(video.video_id)] == ["probe"]
    done = catalog.get_upload(upload.upload_id)
    assert (done.status, done.video_id, done.sha256_actual) == ("complete", video.video_id, SHA)
    # A retried completion (the answer was lost) gives the same video, not a second one.
    again = catalog.complete_upload(upload.upload_id, sha256=SHA, source_path="x", jobs=[PROBE])
    assert again == video
    assert len(catalog.list_videos().videos) == 1
    with pytest.raises(Conflict):
        catalog.abort_upload(upload.upload_id)


def test_checksum_mismatch_aborts(catalog: SqliteCatalog) -> None:
    upload = catalog.create_upload(len(DATA), title="Up", sha256=SHA, temp_path="/tmp/u")
    catalog.add_upload_bytes(upload.upload_id, 0, len(DATA))
    with pytest.raises(Conflict, match="sha256"):
        catalog.complete_upload(upload.upload_id, sha256="0" * 64, source_path="s", jobs=[PROBE])
    aborted = catalog.get_upload(upload.upload_id)
    assert (aborted.status, aborted.sha256_actual) == ("aborted", "0" * 64)
    assert catalog.list_videos().videos == ()
    with pytest.raises(Conflict):
        catalog.add_upload_bytes(upload.upload_id, len(DATA), 0)


def test_a_bad_first_job_rolls_the_completion_back(catalog: SqliteCatalog) -> None:
    upload = catalog.create_upload(1, title="Up", temp_path="/tmp/u")
    catalog.add_upload_bytes(upload.upload_id, 0, 1)
    bad = JobSpec("probe", "probe", {"not json": {1, 2}})
    with pytest.raises(Invalid):
        catalog.complete_upload(upload.upload_id, sha256=SHA, source_path="s", jobs=[bad])
    assert catalog.get_upload(upload.upload_id).status == "open"
    assert catalog.list_videos().videos == ()


def test_abort_and_bad_arguments(catalog: SqliteCatalog) -> None:
    upload = catalog.create_upload(10, title="Up", temp_path="/tmp/u", upload_id="up-1")
    assert catalog.abort_upload("up-1").status == "aborted"
    with pytest.raises(Conflict):
        catalog.complete_upload(upload.upload_id, sha256=SHA, source_path="s")
    with pytest.raises(NotFound):
        catalog.get_upload("nope")
    with pytest.raises(Invalid):
        catalog.create_upload(0, title="Up", temp_path="/tmp/u")
    with pytest.raises(Invalid):
        catalog.create_upload(1, title="Up", temp_path="/tmp/u", sha256="ABC")
    with pytest.raises(Invalid):
        catalog.add_upload_bytes("up-1", -1, 1)


def test_stale_uploads_are_the_open_ones_idle_before_a_time(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    old = catalog.create_upload(10, title="old", temp_path="/tmp/a")
    aborted = catalog.create_upload(10, title="aborted", temp_path="/tmp/b")
    catalog.abort_upload(aborted.upload_id)
    clock.advance(100)
    fresh = catalog.create_upload(10, title="fresh", temp_path="/tmp/c")
    assert [u.upload_id for u in catalog.stale_uploads(clock.now - 50)] == [old.upload_id]
    assert [u.upload_id for u in catalog.stale_uploads(clock.now + 1)] == [
        old.upload_id,
        fresh.upload_id,
    ]
    assert len(catalog.stale_uploads(clock.now + 1, limit=1)) == 1


def test_abort_if_idle_refuses_an_upload_touched_since(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    upload = catalog.create_upload(10, title="u", temp_path="/tmp/u")
    clock.advance(100)
    catalog.add_upload_bytes(upload.upload_id, 0, 5)
    with pytest.raises(Conflict, match="no longer idle"):
        catalog.abort_upload(upload.upload_id, idle_before=clock.now - 50)
    assert catalog.abort_upload(upload.upload_id, idle_before=clock.now + 1).status == "aborted"
    with pytest.raises(Conflict):  # aborted already: not an open, idle upload any more
        catalog.abort_upload(upload.upload_id, idle_before=clock.now + 1)

"""Videos: lifecycle through the statuses, listing for the sync, atomic publish, delete, re-run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from origin.catalog import (
    Conflict,
    Invalid,
    JobSpec,
    NotFound,
    PublishedFile,
    Rendition,
    SqliteCatalog,
    Video,
)
from tests.origin.catalog.conftest import Clock

RENDITIONS = (
    Rendition("h264-360p", "video", "h264", 640, 360, 900_000, 700_000, "avc1.64001e"),
    Rendition("h264-720p", "video", "h264", 1280, 720, 3_000_000, 2_400_000, "avc1.64001f"),
    Rendition("aac-128k-en", "audio", "aac", bitrate_bps=130_000, codecs_string="mp4a.40.2",
              language="en"),
)  # fmt: skip


def files(video_id: str) -> list[PublishedFile]:
    out = [
        PublishedFile(f"/v/{video_id}/master.m3u8", 400),
        PublishedFile(f"/v/{video_id}/manifest.mpd", 2000),
    ]
    for r in RENDITIONS:
        out.append(PublishedFile(f"/v/{video_id}/{r.name}/init.mp4", 800, r.name))
        out.append(PublishedFile(f"/v/{video_id}/{r.name}/seg-00001.m4s", 90_000, r.name))
    return out


def test_create_gives_a_pending_video_with_a_url_safe_id(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    video = catalog.create_video(
        "Cats", description="on skateboards", tags=["cats", "sport"], source_path="src/a.mp4"
    )
    assert len(video.video_id) == 11
    assert video.status == "PENDING"
    assert video.tags == ("cats", "sport")
    assert video.created_at == video.updated_at == clock.now
    assert video.view_count == 0 and video.published_at is None and video.deleted_at is None
    assert catalog.get_video(video.video_id) == video


def test_chosen_ids_are_checked_and_unique(catalog: SqliteCatalog) -> None:
    catalog.create_video("a", video_id="abc_DEF-123")
    with pytest.raises(Conflict):
        catalog.create_video("b", video_id="abc_DEF-123")
    for bad in ("", "a/b", "../x", "x" * 65, "é"):
        with pytest.raises(Invalid):
            catalog.create_video("c", video_id=bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"title": " "}, {"title": "x" * 513}, {"title": "t", "tags": "notalist"},
     {"title": "t", "tags": [""]}, {"title": "t", "tags": ["t"] * 33},
     {"title": "t\ud800"}, {"title": "t", "description": "\udfff"},
     {"title": "t", "tags": ["ok", "\udc80"]}],
)  # fmt: skip
def test_bad_fields_are_invalid(catalog: SqliteCatalog, kwargs: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        catalog.create_video(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(Invalid):
        catalog.create_upload(1, temp_path="/tmp/u", **kwargs)  # type: ignore[arg-type]
    video = catalog.create_video("kept", tags=["kept"])
    with pytest.raises(Invalid):
        catalog.update_video(video.video_id, **kwargs)  # type: ignore[arg-type]
    assert catalog.get_video(video.video_id) == video
    # what is stored can always be sent: every answer is UTF-8
    for v in catalog.list_videos().videos:
        json.dumps([*v.tags, v.title, v.description], ensure_ascii=False).encode()


def test_unknown_video_is_not_found(catalog: SqliteCatalog) -> None:
    for call in (
        lambda: catalog.get_video("nope"),
        lambda: catalog.set_status("nope", "FAILED"),
        lambda: catalog.increment_views("nope"),
        lambda: catalog.delete_video("nope"),
        lambda: catalog.enqueue("nope", JobSpec("probe", "probe")),
    ):
        with pytest.raises(NotFound):
            call()


def test_lifecycle_to_ready(catalog: SqliteCatalog, clock: Clock) -> None:
    vid = catalog.create_video("Lifecycle").video_id
    clock.advance(1)
    probed = catalog.set_probe_result(vid, duration_s=12.5, width=1920, height=1080)
    assert (probed.duration_s, probed.width, probed.height) == (12.5, 1920, 1080)
    assert probed.updated_at == clock.now
    assert catalog.set_status(vid, "SEGMENTED").status == "SEGMENTED"
    assert catalog.set_status(vid, "TRANSCODING").status == "TRANSCODING"
    assert catalog.set_status(vid, "TRANSCODING").status == "TRANSCODING"  # redo is fine
    with pytest.raises(Conflict):
        catalog.set_status(vid, "PENDING")
    with pytest.raises(Invalid):
        catalog.set_status(vid, "READY")
    clock.advance(1)
    ready = catalog.set_published(vid, RENDITIONS, files(vid))
    assert ready.status == "READY" and ready.published_at == clock.now
    detail = catalog.video_detail(vid)
    assert detail.video == ready
    assert [r.name for r in detail.renditions] == ["h264-720p", "h264-360p", "aac-128k-en"]
    assert set(detail.files) == set(files(vid))
    assert detail.renditions[0] == RENDITIONS[1]
    with pytest.raises(Conflict):
        catalog.set_published(vid, RENDITIONS, files(vid))  # re-publishing needs a purge
    with pytest.raises(Conflict):
        catalog.set_status(vid, "FAILED")


def test_failed_keeps_its_reason_until_rerun(catalog: SqliteCatalog) -> None:
    vid = catalog.create_video("Broken").video_id
    failed = catalog.set_status(vid, "FAILED", "no video stream")
    assert (failed.status, failed.failure_reason) == ("FAILED", "no video stream")
    assert catalog.set_status(vid, "FAILED").failure_reason == "no video stream"
    with pytest.raises(Conflict):
        catalog.set_status(vid, "TRANSCODING")
    with pytest.raises(Conflict):
        catalog.set_published(vid, RENDITIONS, files(vid))


def bad_publish(vid: str, case: str) -> tuple[list[Rendition], list[PublishedFile]]:
    good = files(vid)
    stray = PublishedFile(f"/v/{vid}/x/a.m4s", 1, "x")
    return {
        "unknown rendition": (list(RENDITIONS), [*good, stray]),
        "duplicate path": (list(RENDITIONS), [*good, good[0]]),
        "duplicate rendition": ([*RENDITIONS, RENDITIONS[0]], good),
    }[case]


@pytest.mark.parametrize("case", ["unknown rendition", "duplicate path", "duplicate rendition"])
def test_publish_is_all_or_nothing(catalog: SqliteCatalog, case: str) -> None:
    vid = catalog.create_video("Atomic").video_id
    before = catalog.set_status(vid, "TRANSCODING")
    renditions, bad_files = bad_publish(vid, case)
    # The bad row is rejected by the database after the good rows went in: all must roll back.
    with pytest.raises((Invalid, Conflict)):
        catalog.set_published(vid, renditions, bad_files)
    detail = catalog.video_detail(vid)
    assert detail.video == before
    assert detail.renditions == () and detail.files == ()


@pytest.mark.parametrize(
    "path", ["/v/other/master.m3u8", "/etc/passwd", "/v/ID/../x", "/t/tok/v/ID/a.m3u8", "/v/ID/"]
)
def test_publish_refuses_paths_outside_the_title(catalog: SqliteCatalog, path: str) -> None:
    catalog.create_video("Paths", video_id="ID")
    with pytest.raises(Invalid):
        catalog.set_published("ID", RENDITIONS, [PublishedFile(path, 1)])
    assert catalog.get_video("ID").status == "PENDING"


def test_publish_is_invisible_to_readers_until_committed(
    catalog: SqliteCatalog, db_path: Path
) -> None:
    vid = catalog.create_video("Readers").video_id
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM published_files").fetchone()[0] == 0
    catalog.set_published(vid, RENDITIONS, files(vid))
    # An open read snapshot keeps seeing the old state; a new one sees all of it.
    assert reader.execute("SELECT count(*) FROM published_files").fetchone()[0] == 0
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM published_files").fetchone()[0] == len(files(vid))


def make_videos(catalog: SqliteCatalog, clock: Clock, n: int) -> list[Video]:
    out = []
    for i in range(n):
        clock.advance(1)
        out.append(catalog.create_video(f"v{i}", video_id=f"v{i:02d}"))
    return out


def test_list_pages_through_everything_in_update_order(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    videos = make_videos(catalog, clock, 7)
    seen: list[str] = []
    cursor = None
    while True:
        page = catalog.list_videos(limit=3, cursor=cursor)
        seen += [v.video_id for v in page.videos]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [v.video_id for v in videos]


def test_a_row_updated_while_paging_is_seen_again_not_lost(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    make_videos(catalog, clock, 4)
    first = catalog.list_videos(limit=2)
    clock.advance(1)
    catalog.set_status("v00", "FAILED", "x")
    rest = catalog.list_videos(limit=10, cursor=first.next_cursor)
    assert [v.video_id for v in rest.videos] == ["v02", "v03", "v00"]


def test_list_filters(catalog: SqliteCatalog, clock: Clock) -> None:
    videos = make_videos(catalog, clock, 5)
    clock.advance(10)
    catalog.set_published("v01", RENDITIONS, files("v01"))
    catalog.set_status("v03", "FAILED", "bad")
    catalog.delete_video("v04")
    ready = catalog.list_videos(status="READY")
    assert [v.video_id for v in ready.videos] == ["v01"]
    assert ready.next_cursor is None
    since = catalog.list_videos(updated_since=clock.now)
    assert [v.video_id for v in since.videos] == ["v01", "v03"]
    with_deleted = catalog.list_videos(updated_since=clock.now, include_deleted=True)
    assert [v.video_id for v in with_deleted.videos] == ["v01", "v03", "v04"]
    assert len(catalog.list_videos().videos) == len(videos) - 1
    with pytest.raises(Invalid):
        catalog.list_videos(limit=0)
    with pytest.raises(Invalid):
        catalog.list_videos(cursor="not a cursor!")
    with pytest.raises(Invalid):
        catalog.list_videos(status="DONE")  # type: ignore[arg-type]


def test_views_count_without_touching_updated_at(catalog: SqliteCatalog, clock: Clock) -> None:
    video = catalog.create_video("Popular")
    clock.advance(5)
    assert catalog.increment_views(video.video_id) == 1
    assert catalog.increment_views(video.video_id, 41) == 42
    after = catalog.get_video(video.video_id)
    assert after.view_count == 42 and after.updated_at == video.updated_at
    with pytest.raises(Invalid):
        catalog.increment_views(video.video_id, -1)


def test_update_changes_only_what_is_given(catalog: SqliteCatalog) -> None:
    video = catalog.create_video("Old", description="d", tags=["a"])
    updated = catalog.update_video(video.video_id, title="New", tags=[])
    assert (updated.title, updated.description, updated.tags) == ("New", "d", ())
    assert catalog.update_video(video.video_id) == updated


def test_soft_delete_leaves_a_tombstone_and_returns_the_files(
    catalog: SqliteCatalog, clock: Clock
) -> None:
    vid = catalog.create_video("Gone").video_id
    catalog.enqueue(vid, JobSpec("probe", "probe"))
    catalog.set_published(vid, RENDITIONS, files(vid))
    clock.advance(3)
    removed = catalog.delete_video(vid)
    assert set(removed) == set(files(vid))
    with pytest.raises(NotFound):
        catalog.get_video(vid)
    with pytest.raises(NotFound):
        catalog.delete_video(vid)
    tomb = catalog.get_video(vid, include_deleted=True)
    assert tomb.deleted_at == tomb.updated_at == clock.now
    assert catalog.list_jobs(vid) == []
    assert catalog.delete_video(vid, hard=True) == ()
    with pytest.raises(NotFound):
        catalog.get_video(vid, include_deleted=True)


def test_hard_delete_cascades(catalog: SqliteCatalog, db_path: Path) -> None:
    vid = catalog.create_video("Gone").video_id
    catalog.enqueue(vid, JobSpec("probe", "probe"))
    catalog.set_published(vid, RENDITIONS, files(vid))
    assert len(catalog.delete_video(vid, hard=True)) == len(files(vid))
    conn = sqlite3.connect(db_path)
    for table in ("videos", "renditions", "published_files", "jobs"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_rerun_only_from_failed_and_restarts_the_pipeline(catalog: SqliteCatalog) -> None:
    vid = catalog.create_video("Again").video_id
    catalog.enqueue(vid, JobSpec("probe", "probe"))
    with pytest.raises(Conflict):
        catalog.rerun(vid)
    catalog.set_status(vid, "FAILED", "disk full")
    again = catalog.rerun(vid, jobs=[JobSpec("probe", "probe", {"again": True})])
    assert (again.status, again.failure_reason) == ("PENDING", None)
    [job] = catalog.list_jobs(vid)
    assert job.payload == {"again": True} and job.attempts == 0


def test_find_videos_includes_tombstones_and_leaves_out_unknown_ids(
    catalog: SqliteCatalog,
) -> None:
    live = catalog.create_video("live").video_id
    gone = catalog.create_video("gone").video_id
    catalog.delete_video(gone)
    found = catalog.find_videos([live, gone, "unknown", live])
    assert sorted(found) == sorted([live, gone])
    assert found[gone].deleted_at is not None and found[live].deleted_at is None
    assert catalog.find_videos([]) == {}

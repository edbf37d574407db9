"""The catalog API against the live app: list with filters and pages, detail with files, edits,
search ranking, views, job progress, re-runs and deletes (files leave the disk, the failed or
interrupted pipeline's files too); text that is not Unicode and ids with a trailing newline are
400; anonymous readers do not see failure reasons."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from origin.api.errors import ApiError
from origin.api.input import parse_search_query
from origin.api.render import HIDDEN_REASON
from origin.api.upload_files import source_path
from origin.api.videos import VideoRoutes, VideoSettings
from origin.catalog import JobSpec, SqliteCatalog
from origin.pipeline.workdir import WorkDir
from origin.storage import STAGING, LocalStorage
from tests.origin.api.conftest import Api

DATA = random.Random(7).randbytes(20_000)


async def videos(api: Api, query: str = "") -> dict[str, Any]:
    status, page, _ = await api.call("GET", "/api/v1/videos" + query)
    assert status == 200, page
    return dict(page)


async def test_list_filters_by_status_and_pages_in_update_order(api: Api) -> None:
    ids = [api.catalog.create_video(f"Video {i}").video_id for i in range(5)]
    api.publish(ids[1])
    api.publish(ids[3])
    every = await videos(api)
    assert [v["video_id"] for v in every["videos"]] == [ids[0], ids[2], ids[4], ids[1], ids[3]]
    assert every["next_cursor"] is None
    ready = await videos(api, "?status=READY")
    assert [v["video_id"] for v in ready["videos"]] == [ids[1], ids[3]]
    assert {v["status"] for v in ready["videos"]} == {"READY"}
    assert (await videos(api, "?status=pending"))["videos"][0]["video_id"] == ids[0]
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        page = await videos(api, f"?limit=2{cursor}")
        seen += [v["video_id"] for v in page["videos"]]
        if page["next_cursor"] is None:
            break
        assert len(page["videos"]) == 2
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [v["video_id"] for v in every["videos"]]


async def test_updated_since_takes_seconds_or_rfc3339(api: Api) -> None:
    first = api.catalog.create_video("Old")
    later = api.catalog.create_video("New")
    since = later.updated_at
    assert since > first.updated_at
    page = await videos(api, f"?updated_since={since!r}")
    assert [v["video_id"] for v in page["videos"]] == [later.video_id]
    page = await videos(api, "?updated_since=1970-01-01T00:00:00Z")
    assert len(page["videos"]) == 2
    page = await videos(api, "?updated_since=2999-01-01T00:00:00%2B02:00")
    assert page["videos"] == []


async def test_deleted_videos_leave_tombstones_for_the_sync(api: Api) -> None:
    keep = api.catalog.create_video("Keep").video_id
    gone = api.catalog.create_video("Gone").video_id
    status, _, _ = await api.call("DELETE", f"/api/v1/videos/{gone}")
    assert status == 200
    assert [v["video_id"] for v in (await videos(api))["videos"]] == [keep]
    page = await videos(api, "?include_deleted=true")
    tombstone = next(v for v in page["videos"] if v["video_id"] == gone)
    assert tombstone["deleted_at"] is not None


async def test_detail_has_renditions_and_published_files(api: Api) -> None:
    video_id = api.catalog.create_video("Published").video_id
    api.publish(video_id, files=3)
    status, detail, _ = await api.call("GET", f"/api/v1/videos/{video_id}")
    assert status == 200
    assert detail["status"] == "READY" and detail["published_at"] is not None
    assert [r["name"] for r in detail["renditions"]] == ["h264-360p"]
    assert detail["renditions"][0]["codecs_string"] == "avc1.64001e"
    assert detail["files"][0] == {
        "path": f"/v/{video_id}/h264-360p/seg-00001.m4s",
        "size": len(b"h264-360p/seg-00001.m4s") * 10,
        "rendition": "h264-360p",
    }
    assert {f["path"]: f["rendition"] for f in detail["files"]}[
        f"/v/{video_id}/master.m3u8"
    ] is None
    assert "source_path" not in detail


async def test_patch_changes_fields_and_search_follows(api: Api) -> None:
    video_id = api.catalog.create_video("Before", tags=["x"]).video_id
    status, video, _ = await api.call(
        "PATCH", f"/api/v1/videos/{video_id}", json_body={"title": "Aurora", "tags": ["sky"]}
    )
    assert (status, video["title"], video["tags"], video["description"]) == (
        200,
        "Aurora",
        ["sky"],
        "",
    )
    status, found, _ = await api.call("GET", "/api/v1/search?q=aurora")
    assert [h["video"]["video_id"] for h in found["hits"]] == [video_id]
    status, found, _ = await api.call("GET", "/api/v1/search?q=before")
    assert found["hits"] == []


@pytest.mark.parametrize(
    "body",
    [{}, {"title": ""}, {"title": None}, {"tags": "x"}, {"views": 3}, {"description": 5}],
)
async def test_bad_patches_are_400(api: Api, body: dict[str, Any]) -> None:
    video_id = api.catalog.create_video("T").video_id
    status, answer, _ = await api.call("PATCH", f"/api/v1/videos/{video_id}", json_body=body)
    assert status == 400, answer
    assert api.catalog.get_video(video_id).title == "T"


async def test_search_ranks_title_matches_first_and_filters(api: Api) -> None:
    in_description = api.catalog.create_video("Night city", description="lights of a harbour")
    in_tags = api.catalog.create_video("Boats", tags=["harbour"])
    in_title = api.catalog.create_video("Harbour at dawn")
    api.catalog.create_video("Mountains")
    status, found, _ = await api.call("GET", "/api/v1/search?q=Harbour")
    assert status == 200 and found["query"] == "Harbour"
    order = [h["video"]["video_id"] for h in found["hits"]]
    assert order == [in_title.video_id, in_tags.video_id, in_description.video_id]
    scores = [h["score"] for h in found["hits"]]
    assert scores == sorted(scores)
    status, found, _ = await api.call("GET", "/api/v1/search?q=harbour&limit=1")
    assert [h["video"]["video_id"] for h in found["hits"]] == [in_title.video_id]
    api.publish(in_tags.video_id)
    status, found, _ = await api.call("GET", "/api/v1/search?q=harbour&status=READY")
    assert [h["video"]["video_id"] for h in found["hits"]] == [in_tags.video_id]
    status, found, _ = await api.call("GET", "/api/v1/search?q=%22)(*OR NEAR")
    assert (status, found["hits"]) == (200, [])


async def test_views_are_counted(api: Api) -> None:
    video_id = api.catalog.create_video("Watched").video_id
    url = f"/api/v1/videos/{video_id}/views"
    status, answer, _ = await api.call("POST", url)
    assert (status, answer) == (200, {"video_id": video_id, "view_count": 1})
    status, answer, _ = await api.call("POST", url, json_body={"count": 41})
    assert answer["view_count"] == 42
    status, detail, _ = await api.call("GET", f"/api/v1/videos/{video_id}")
    assert detail["view_count"] == 42
    for bad in ({"count": 0}, {"count": "3"}, {"n": 1}):
        status, answer, _ = await api.call("POST", url, json_body=bad)
        assert status == 400, bad
    status, _, _ = await api.call("POST", "/api/v1/videos/nosuchvideo/views")
    assert status == 404


async def test_rerun_only_from_failed(api: Api) -> None:
    done = await api.upload(DATA)
    video_id = done["video_id"]
    url = f"/api/v1/videos/{video_id}/rerun"
    status, answer, _ = await api.call("POST", url)
    assert (status, answer["error"]) == (409, "conflict")
    assert "PENDING" in answer["detail"]
    job = api.catalog.claim("w1")
    assert job is not None
    api.catalog.fail(job.job_id, "w1", "ffprobe: moov atom not found", permanent=True)
    assert api.catalog.get_video(video_id).status == "FAILED"
    status, video, _ = await api.call("POST", url)
    assert (status, video["status"], video["failure_reason"]) == (200, "PENDING", None)
    [job] = api.catalog.list_jobs(video_id)
    assert (job.kind, job.state, job.attempts) == ("probe", "queued", 0)


async def test_jobs_report_progress_per_stage_with_errors(api: Api) -> None:
    done = await api.upload(DATA)
    video_id = done["video_id"]
    url = f"/api/v1/videos/{video_id}/jobs"
    status, progress, _ = await api.call("GET", url)
    assert (status, progress["percent"], progress["stage"]) == (200, 0.0, "probe")
    assert progress["stages"] == {
        "probe": {"queued": 1, "leased": 0, "done": 0, "failed": 0, "total": 1}
    }
    probe = api.catalog.claim("w1")
    assert probe is not None
    chunks = [JobSpec("encode_chunk", f"chunk-{i}") for i in range(3)]
    api.catalog.complete(probe.job_id, "w1", then=chunks)
    chunk = api.catalog.claim("w1", ["encode_chunk"])
    assert chunk is not None
    api.catalog.fail(chunk.job_id, "w1", "x264 [error]: out of memory")
    status, progress, _ = await api.call("GET", url)
    assert progress["percent"] == 25.0 and progress["stage"] == "encode_chunk"
    assert list(progress["stages"]) == ["probe", "encode_chunk"]
    assert progress["stages"]["encode_chunk"] == {
        "queued": 3,
        "leased": 0,
        "done": 0,
        "failed": 0,
        "total": 3,
    }
    failed = next(j for j in progress["jobs"] if j["job_id"] == chunk.job_id)
    assert (failed["state"], failed["attempts"], failed["max_attempts"]) == ("queued", 1, 3)
    assert failed["last_error"] == "x264 [error]: out of memory"
    assert failed["errors"][0]["error"] == "x264 [error]: out of memory"
    assert "payload" not in failed and "lease_owner" not in failed


async def test_delete_removes_files_and_source(api: Api) -> None:
    done = await api.upload(DATA)
    video_id = done["video_id"]
    api.publish(video_id, files=4)
    title_dir = api.media_root / "v" / video_id
    assert len(list(title_dir.rglob("*.m4s"))) == 3
    status, answer, _ = await api.call("DELETE", f"/api/v1/videos/{video_id}")
    assert (status, answer["deleted"], answer["media_removed"]) == (200, True, True)
    assert len(answer["files"]) == 4
    assert not title_dir.exists()
    assert not source_path(api.settings.sources, video_id).exists()
    status, answer, _ = await api.call("GET", f"/api/v1/videos/{video_id}")
    assert status == 404
    async with api.session.get(f"{api.base_url}/v/{video_id}/master.m3u8") as r:
        assert r.status == 404
    assert api.catalog.list_jobs(video_id) == []
    # deleting again finishes (nothing left) and answers 200; an unknown id is 404
    status, answer, _ = await api.call("DELETE", f"/api/v1/videos/{video_id}")
    assert (status, answer["media_removed"], answer["files"]) == (200, False, [])
    status, answer, _ = await api.call("DELETE", "/api/v1/videos/nosuchvideo")
    assert (status, answer["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "?status=DONE",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?updated_since=yesterday",
        "?updated_since=2024-01-01T00:00:00",
        "?updated_since=-5",
        "?updated_since=nan",
        "?cursor=%21%21%21",
        "?include_deleted=maybe",
    ],
)
async def test_bad_list_queries_are_400(api: Api, query: str) -> None:
    status, answer, _ = await api.call("GET", "/api/v1/videos" + query)
    assert status == 400, answer
    assert set(answer) >= {"error", "detail"}


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20", "?q=a&limit=101", "?q=a&status=x"])
async def test_bad_searches_are_400(api: Api, query: str) -> None:
    status, answer, _ = await api.call("GET", "/api/v1/search" + query)
    assert status == 400, answer


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_bad_and_unknown_video_ids(api: Api, method: str) -> None:
    body = {"title": "x"} if method == "PATCH" else None
    status, answer, _ = await api.call(method, "/api/v1/videos/bad.id", json_body=body)
    assert (status, answer["error"]) == (400, "bad_id")
    status, answer, _ = await api.call(method, "/api/v1/videos/unknown", json_body=body)
    assert (status, answer["error"]) == (404, "not_found")


async def test_unknown_paths_and_methods_are_json(api: Api) -> None:
    status, answer, _ = await api.call("GET", "/api/v1/nothing")
    assert (status, answer["error"]) == (404, "not_found")
    status, answer, headers = await api.call("PUT", "/api/v1/videos")
    assert (status, answer["error"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "GET"


LONE_SURROGATES = [
    {"tags": ["ok", "\udc80"]},
    {"title": "Ti\ud800tle"},
    {"description": "a \udfff b"},
]


@pytest.mark.parametrize("body", LONE_SURROGATES)
async def test_lone_surrogates_are_400_and_never_stored(api: Api, body: dict[str, Any]) -> None:
    video_id = api.catalog.create_video("T", tags=["kept"]).video_id
    status, answer, _ = await api.call("PATCH", f"/api/v1/videos/{video_id}", json_body=body)
    assert (status, answer["error"]) == (400, "bad_text"), answer
    assert api.catalog.get_video(video_id).tags == ("kept",)
    # every answer that carries the video still works
    assert [v["video_id"] for v in (await videos(api))["videos"]] == [video_id]
    status, _, _ = await api.call("GET", f"/api/v1/videos/{video_id}")
    assert status == 200
    status, found, _ = await api.call("GET", "/api/v1/search?q=kept")
    assert (status, len(found["hits"])) == (200, 1)


async def test_a_search_with_a_lone_surrogate_is_400(api: Api) -> None:
    status, answer, _ = await api.call("GET", "/api/v1/search?q=%ED%B2%80")
    assert status in (200, 400), answer  # however the URL decodes, never a 500
    for q in ("\udc80", "a\ud800"):
        with pytest.raises(ApiError) as info:
            parse_search_query({"q": q})
        assert (info.value.status, info.value.code) == (400, "bad_text")


@pytest.mark.parametrize("path", ["/api/v1/videos/abc%0A", "/api/v1/videos/abc%0A/jobs"])
async def test_an_id_with_a_trailing_newline_is_400(api: Api, path: str) -> None:
    api.catalog.create_video("T", video_id="abc")
    status, answer, _ = await api.call("GET", path)
    assert (status, answer["error"]) == (400, "bad_id")


def write_files(
    root: Path, names: tuple[str, ...] = ("master.m3u8", "h264-360p/seg-1.m4s")
) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"stale")


async def test_rerun_removes_what_the_failed_run_left(api: Api) -> None:
    """A publish renamed its title into place and the video FAILED before it was recorded:
    publishing never replaces a title in place, so the re-run clears it."""
    video_id = api.catalog.create_video("Broken").video_id
    api.catalog.set_status(video_id, "FAILED", "publish: conflict")
    title = api.media_root / "v" / video_id
    staging = api.media_root / STAGING / f"{video_id}.left"
    write_files(title)
    write_files(staging)
    status, video, _ = await api.call("POST", f"/api/v1/videos/{video_id}/rerun")
    assert (status, video["status"]) == (200, "PENDING")
    assert not title.exists() and not staging.exists()
    # a video that is not FAILED keeps its files
    ready = api.catalog.create_video("Ready").video_id
    api.publish(ready)
    status, _, _ = await api.call("POST", f"/api/v1/videos/{ready}/rerun")
    assert status == 409
    assert (api.media_root / "v" / ready / "master.m3u8").exists()


async def test_delete_removes_staging_directories(api: Api) -> None:
    video_id = api.catalog.create_video("Mid-pipeline").video_id
    staging = api.media_root / STAGING / f"{video_id}.abc123"
    other = api.media_root / STAGING / "other.abc123"
    write_files(staging)
    write_files(other)
    status, _, _ = await api.call("DELETE", f"/api/v1/videos/{video_id}")
    assert status == 200
    assert not staging.exists() and other.exists()


async def test_delete_removes_the_work_directory(catalog: SqliteCatalog, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    storage = LocalStorage(tmp_path / "media")
    routes = VideoRoutes(
        catalog,
        storage,
        VideoSettings(sources=tmp_path / "sources", max_attempts=1, work_dir=work_dir),
    )
    app = web.Application()
    app.router.add_delete("/videos/{video_id}", routes.delete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        video_id = catalog.create_video("Encoding").video_id
        work = WorkDir(work_dir, video_id)
        write_files(work.root, ("chunks/h264-360p/00000.mp4", "audio.mp4"))
        write_files(WorkDir(work_dir, "other").root)
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"http://127.0.0.1:{port}/videos/{video_id}") as r,
        ):
            assert r.status == 200
        assert not work.root.exists() and (work_dir / "other").exists()
    finally:
        await runner.cleanup()


async def test_anonymous_readers_do_not_see_failure_reasons(public_api: Api) -> None:
    reason = "probe failed: /srv/origin/sources/x/source: Invalid data"
    failed = public_api.catalog.create_video("Broken", tags=["broken"]).video_id
    public_api.catalog.set_status(failed, "FAILED", reason)
    answers = {
        "list": ("/api/v1/videos", lambda body: body["videos"][0]),
        "detail": (f"/api/v1/videos/{failed}", lambda body: body),
        "search": ("/api/v1/search?q=broken", lambda body: body["hits"][0]["video"]),
    }
    for what, (path, video_of) in answers.items():
        status, body, _ = await public_api.call("GET", path, token=None)
        assert status == 200, what
        assert video_of(body)["failure_reason"] == HIDDEN_REASON, what
        assert "/srv" not in json.dumps(body), what
        status, body, _ = await public_api.call("GET", path)  # with a token
        assert video_of(body)["failure_reason"] == reason, what
    # a wrong token is refused, not taken for an anonymous reader
    status, _, _ = await public_api.call("GET", f"/api/v1/videos/{failed}", token="wrong-token")
    assert status == 401
    live = public_api.catalog.create_video("Fine").video_id
    status, body, _ = await public_api.call("GET", f"/api/v1/videos/{live}", token=None)
    assert body["failure_reason"] is None

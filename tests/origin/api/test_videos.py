"""The catalog API against the live app: list with filters and pages, detail with files, edits,
search ranking, views, job progress, re-runs and deletes (files leave the disk)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from origin.api.upload_files import source_path
from origin.catalog import JobSpec
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

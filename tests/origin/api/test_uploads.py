"""Resumable uploads against the live app: whole-file and part uploads, resuming after a dropped
connection, bodies over their limit refused while they stream, checksums, abort, idempotency."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from origin.api.upload_files import move_into_place, source_path
from tests.origin.api.conftest import MAX_UPLOAD, TOKEN, Api, sha256

DATA = random.Random(4).randbytes(300_000)


def temp_file(api: Api, upload_id: str) -> Path:
    return api.settings.upload_dir / f"{upload_id}.part"


def content_range(start: int, end: int, total: int) -> dict[str, str]:
    return {"Content-Range": f"bytes {start}-{end - 1}/{total}"}


async def test_whole_file_upload_makes_a_pending_video_with_a_probe_job(api: Api) -> None:
    done = await api.upload(DATA, title="Sunrise", description="over the sea", tags=["sea"])
    video_id = done["video_id"]
    assert video_id == done["upload_id"]
    assert done["received"] == done["size"] == len(DATA)
    assert done["sha256_actual"] == sha256(DATA)
    assert done["video"]["status"] == "PENDING"
    assert (done["video"]["title"], done["video"]["tags"]) == ("Sunrise", ["sea"])
    # the source is in place, whole, and the temp file is gone
    source = source_path(api.settings.sources, video_id)
    assert sha256(source.read_bytes()) == sha256(DATA)
    assert not temp_file(api, done["upload_id"]).exists()
    video = api.catalog.get_video(video_id)
    assert (video.status, video.source_path) == ("PENDING", str(source))
    [job] = api.catalog.list_jobs(video_id)
    assert (job.kind, job.state, job.max_attempts) == ("probe", "queued", 2)


async def test_completion_is_idempotent(api: Api) -> None:
    done = await api.upload(DATA)
    url = done["upload_url"]
    # a retried last part and a retried completion both answer with the same video
    status, again, _ = await api.call("PUT", url, data=DATA)
    assert (status, again["video_id"], again["status"]) == (200, done["video_id"], "complete")
    status, again, _ = await api.call("POST", url + "/complete")
    assert (status, again["video_id"]) == (200, done["video_id"])
    assert len(api.catalog.list_videos().videos) == 1
    assert len(api.catalog.list_jobs(done["video_id"])) == 1


async def test_parts_append_at_the_received_offset(api: Api) -> None:
    created = await api.create_upload(DATA)
    url, size = created["upload_url"], len(DATA)
    assert (created["received"], created["status"], created["video_id"]) == (0, "open", None)
    status, part, headers = await api.call(
        "PUT", url, data=DATA[:100_000], headers=content_range(0, 100_000, size)
    )
    assert (status, part["received"], part["status"]) == (200, 100_000, "open")
    assert headers["Upload-Offset"] == "100000"
    status, _, headers = await api.call("HEAD", url)
    assert (status, headers["Upload-Offset"], headers["Upload-Length"]) == (200, "100000", "300000")
    # the same part again, or one that skips ahead: 409 saying where to resume
    for start in (0, 150_000):
        part = DATA[start : start + 10]
        status, answer, headers = await api.call(
            "PUT", url, data=part, headers=content_range(start, start + 10, size)
        )
        assert (status, answer["error"], answer["received"]) == (409, "offset_mismatch", 100_000)
        assert headers["Upload-Offset"] == "100000"
    # a part without Content-Range is the whole file from 0: not now
    status, answer, _ = await api.call("PUT", url, data=DATA)
    assert (status, answer["received"]) == (409, 100_000)
    status, done, _ = await api.call(
        "PUT", url, data=DATA[100_000:], headers=content_range(100_000, size, size)
    )
    assert (status, done["status"]) == (200, "complete")
    source = source_path(api.settings.sources, done["video_id"])
    assert source.read_bytes() == DATA


async def test_dropped_connection_keeps_what_arrived_and_the_client_resumes(api: Api) -> None:
    created = await api.create_upload(DATA)
    upload_id, url, size = created["upload_id"], created["upload_url"], len(DATA)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        (
            f"PUT {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {size}\r\nContent-Range: bytes 0-{size - 1}/{size}\r\n\r\n"
        ).encode()
    )
    sent = 123_457
    for start in range(0, sent, 40_000):
        writer.write(DATA[start : min(start + 40_000, sent)])
        await writer.drain()
    await asyncio.sleep(0.3)  # the server reads what was sent ...
    writer.close()  # ... and the client goes away mid-part
    await writer.wait_closed()
    assert await reader.read() == b""  # no answer to a request that never ended

    offset = 0
    for _ in range(100):
        status, _, headers = await api.call("HEAD", url)
        offset = int(headers["Upload-Offset"])
        if offset:
            break
        await asyncio.sleep(0.02)
    assert offset == sent  # every byte that arrived was written, fsynced and counted
    assert temp_file(api, upload_id).read_bytes() == DATA[:sent]
    status, done, _ = await api.call(
        "PUT", url, data=DATA[offset:], headers=content_range(offset, size, size)
    )
    assert (status, done["status"], done["sha256_actual"]) == (200, "complete", sha256(DATA))
    assert source_path(api.settings.sources, upload_id).read_bytes() == DATA


async def test_declared_size_over_the_maximum_is_413_before_anything_is_stored(api: Api) -> None:
    body = {"title": "Huge", "size": MAX_UPLOAD + 1}
    status, answer, _ = await api.call("POST", "/api/v1/uploads", json_body=body)
    assert (status, answer["error"], answer["max_upload_size"]) == (413, "too_large", MAX_UPLOAD)
    assert not api.settings.upload_dir.exists()


async def test_a_body_longer_than_its_part_is_cut_off_while_it_streams(api: Api) -> None:
    declared = 3 * 2**20  # several of the server's write chunks, under the maximum
    data = random.Random(5).randbytes(declared)
    created = await api.create_upload(data)
    temp = temp_file(api, created["upload_id"])
    chunk = 64 * 1024
    biggest = produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal biggest, produced
        for _ in range(16 * MAX_UPLOAD // chunk):  # far more than declared, and than the maximum
            if temp.exists():
                biggest = max(biggest, temp.stat().st_size)
            produced += chunk
            yield os.urandom(chunk)
            await asyncio.sleep(0)

    # chunked (no Content-Length): only the server's count can stop it
    status, answer, _ = await api.call("PUT", created["upload_url"], data=endless())
    assert (status, answer["error"], answer["received"]) == (413, "too_large", 0)
    assert 0 < biggest <= declared  # written as it came, never past the declared size
    assert produced < 2 * MAX_UPLOAD  # the answer came while the body was still streaming
    status, upload, _ = await api.call("GET", created["upload_url"])
    assert upload["received"] == 0  # none of the refused part counts
    assert temp.stat().st_size == 0
    # the upload is still usable
    status, done, _ = await api.call("PUT", created["upload_url"], data=data)
    assert (status, done["status"]) == (200, "complete")


async def test_content_length_over_the_part_is_413_without_reading(api: Api) -> None:
    created = await api.create_upload(DATA)
    status, answer, headers = await api.call(
        "PUT", created["upload_url"], data=DATA + b"x", headers=content_range(0, 10, len(DATA))
    )
    assert (status, answer["error"]) == (413, "too_large")
    assert headers.get("Connection") == "close"
    assert api.catalog.get_upload(created["upload_id"]).received == 0


async def test_a_body_shorter_than_its_part_keeps_what_came(api: Api) -> None:
    created = await api.create_upload(DATA)

    async def some() -> AsyncIterator[bytes]:
        yield DATA[:1000]

    status, answer, _ = await api.call(
        "PUT", created["upload_url"], data=some(), headers=content_range(0, 5000, len(DATA))
    )
    assert (status, answer["received"], answer["status"]) == (200, 1000, "open")


async def test_checksum_mismatch_aborts_and_removes_the_file(api: Api) -> None:
    created = await api.create_upload(DATA, sha256=sha256(b"something else"))
    status, answer, _ = await api.call("PUT", created["upload_url"], data=DATA)
    assert (status, answer["error"], answer["actual"]) == (422, "checksum_mismatch", sha256(DATA))
    assert not temp_file(api, created["upload_id"]).exists()
    assert not source_path(api.settings.sources, created["upload_id"]).exists()
    status, upload, _ = await api.call("GET", created["upload_url"])
    assert upload["status"] == "aborted"
    status, answer, _ = await api.call("PUT", created["upload_url"], data=DATA)
    assert (status, answer["error"]) == (409, "aborted")
    assert api.catalog.list_videos().videos == ()


async def test_a_completion_that_died_after_moving_the_file_is_finished(api: Api) -> None:
    created = await api.create_upload(DATA)
    upload_id = created["upload_id"]
    temp = temp_file(api, upload_id)
    temp.parent.mkdir(parents=True)
    temp.write_bytes(DATA)
    api.catalog.add_upload_bytes(upload_id, 0, len(DATA))
    source = source_path(api.settings.sources, upload_id)
    move_into_place(temp, source)  # then the server died
    status, done, _ = await api.call("POST", created["upload_url"] + "/complete")
    assert (status, done["status"], done["sha256_actual"]) == (200, "complete", sha256(DATA))
    assert source.read_bytes() == DATA and not temp.exists()
    assert api.catalog.get_video(upload_id).source_path == str(source)


async def test_a_mismatch_after_an_earlier_completion_moved_the_file_leaves_nothing(
    api: Api,
) -> None:
    """A completion moved the file to the sources and died before the catalog recorded it;
    the file then no longer has its checksum (bit rot): the retried completion removes it."""
    created = await api.create_upload(DATA)
    upload_id = created["upload_id"]
    temp = temp_file(api, upload_id)
    temp.parent.mkdir(parents=True)
    temp.write_bytes(DATA[:-1] + b"?")
    api.catalog.add_upload_bytes(upload_id, 0, len(DATA))
    move_into_place(temp, source_path(api.settings.sources, upload_id))
    status, answer, _ = await api.call("POST", created["upload_url"] + "/complete")
    assert (status, answer["error"]) == (422, "checksum_mismatch")
    assert not temp.exists()
    assert not (api.settings.sources / upload_id).exists()
    assert api.catalog.get_upload(upload_id).status == "aborted"


async def test_abort_removes_the_bytes(api: Api) -> None:
    created = await api.create_upload(DATA)
    url = created["upload_url"]
    await api.call("PUT", url, data=DATA[:10], headers=content_range(0, 10, len(DATA)))
    assert temp_file(api, created["upload_id"]).exists()
    status, answer, _ = await api.call("DELETE", url)
    assert (status, answer["status"]) == (200, "aborted")
    assert not temp_file(api, created["upload_id"]).exists()
    status, answer, _ = await api.call("POST", url + "/complete")
    assert (status, answer["error"]) == (409, "aborted")
    done = await api.upload(DATA)
    status, answer, _ = await api.call("DELETE", done["upload_url"])
    assert (status, answer["error"]) == (409, "conflict")


async def test_complete_before_the_last_byte_is_409_with_the_offset(api: Api) -> None:
    created = await api.create_upload(DATA)
    status, answer, _ = await api.call("POST", created["upload_url"] + "/complete")
    assert (status, answer["error"], answer["received"]) == (409, "offset_mismatch", 0)


async def test_parallel_parts_of_one_upload_take_turns(api: Api) -> None:
    created = await api.create_upload(DATA)
    url, size = created["upload_url"], len(DATA)
    half = size // 2
    first, second = await asyncio.gather(
        api.call("PUT", url, data=DATA[:half], headers=content_range(0, half, size)),
        api.call("PUT", url, data=DATA[:half], headers=content_range(0, half, size)),
    )
    assert sorted([first[0], second[0]]) == [200, 409]
    assert api.catalog.get_upload(created["upload_id"]).received == half


SUM = "ab" * 32
"""A well-formed sha256 for the bodies that are wrong elsewhere."""
BAD_NEW_UPLOADS: list[tuple[Any, str]] = [
    ({"size": 10, "sha256": SUM}, "missing_field"),
    ({"title": "t", "sha256": SUM}, "missing_field"),
    ({"title": "t", "size": 10}, "missing_field"),  # the checksum is not optional
    ({"title": "t", "size": 10, "sha256": None}, "missing_field"),
    ({"title": " ", "size": 10, "sha256": SUM}, "bad_request"),
    ({"title": "t", "size": 0, "sha256": SUM}, "bad_request"),
    ({"title": "t", "size": True, "sha256": SUM}, "bad_request"),
    ({"title": "t", "size": "10", "sha256": SUM}, "bad_request"),
    ({"title": "t", "size": 10, "sha256": "abc"}, "bad_request"),
    ({"title": "t", "size": 10, "sha256": SUM + "\n"}, "bad_request"),
    ({"title": "t", "size": 10, "sha256": SUM, "tags": "one"}, "bad_request"),
    ({"title": "t", "size": 10, "sha256": SUM, "tags": [""]}, "bad_request"),
    ({"title": "t", "size": 10, "sha256": SUM, "colour": "red"}, "unknown_field"),
    ({"title": "t" * 513, "size": 10, "sha256": SUM}, "bad_request"),
    ({"title": "t\udc80", "size": 10, "sha256": SUM}, "bad_text"),
    ({"title": "t", "description": "\ud800", "size": 10, "sha256": SUM}, "bad_text"),
    ({"title": "t", "tags": ["ok", "\udfff"], "size": 10, "sha256": SUM}, "bad_text"),
    ([1, 2], "bad_json"),
]


@pytest.mark.parametrize(("body", "code"), BAD_NEW_UPLOADS)
async def test_bad_new_uploads_are_400(api: Api, body: Any, code: str) -> None:
    status, answer, _ = await api.call("POST", "/api/v1/uploads", json_body=body)
    assert (status, answer["error"]) == (400, code), answer
    assert answer["detail"]


async def test_malformed_json_and_bad_ids_are_400_unknown_ids_404(api: Api) -> None:
    status, answer, _ = await api.call("POST", "/api/v1/uploads", data=b"{nope")
    assert (status, answer["error"]) == (400, "bad_json")
    deep = b"[" * 100_000 + b"]" * 100_000  # RecursionError in the parser: was a 500
    status, answer, _ = await api.call("POST", "/api/v1/uploads", data=deep)
    assert (status, answer["error"]) == (400, "bad_json")
    status, answer, _ = await api.call("GET", "/api/v1/uploads/bad.id")
    assert (status, answer["error"]) == (400, "bad_id")
    status, answer, _ = await api.call("PUT", "/api/v1/uploads/nosuchupload", data=b"x")
    assert (status, answer["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    "value", ["bytes 0-1", "bytes=0-1/300000", "bytes 5-1/300000", "bytes 0-300000/300000", "x"]
)
async def test_bad_content_range_is_400(api: Api, value: str) -> None:
    created = await api.create_upload(DATA)
    status, answer, _ = await api.call(
        "PUT", created["upload_url"], data=b"xx", headers={"Content-Range": value}
    )
    assert (status, answer["error"]) == (400, "bad_range")


async def test_content_range_of_another_size_is_400(api: Api) -> None:
    created = await api.create_upload(DATA)
    status, answer, _ = await api.call(
        "PUT", created["upload_url"], data=b"xx", headers={"Content-Range": "bytes 0-1/2"}
    )
    assert (status, answer["error"]) == (400, "size_mismatch")

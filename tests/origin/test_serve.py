"""The origin's HTTP answers, against the real origin process on loopback and real files.

Requests go through ``http.client`` so that request targets reach the server byte for byte
(no client-side normalisation of ``..`` or percent escapes).
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest
import xxhash

from origin.serve import make_app, serve_until
from origin.storage import EtagCache, LocalStorage, StorageError
from tests.support.origin_proc import OriginProc, object_file, run_origin, write_object
from tests.support.procs import free_port

SEG = "/v/t1/h264-360p/seg-00001.m4s"
SEG_DATA = random.Random(1).randbytes(1000)
BIG = "/v/big/h264-720p/seg-00001.m4s"
BIG_SIZE = 64 * 1024 * 1024

OBJECTS: dict[str, bytes] = {
    "/v/t1/master.m3u8": b"#EXTM3U\nh264-360p/playlist.m3u8\n",
    "/v/t1/manifest.mpd": b"<?xml version='1.0'?><MPD/>",
    "/v/t1/h264-360p/playlist.m3u8": b"#EXTM3U\nseg-00001.m4s\n",
    "/v/t1/h264-360p/init.mp4": b"\x00\x00\x00\x18ftypiso6",
    SEG: SEG_DATA,
    "/v/t1/subs/en.vtt": b"WEBVTT\n",
    "/v/t1/thumbs/0001.jpg": b"\xff\xd8\xff\xe0",
    "/v/t1/empty.m4s": b"",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(
    origin: OriginProc, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", origin.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def xxh3_etag(data: bytes) -> str:
    return f'"{xxhash.xxh3_128_hexdigest(data)}"'


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("origin")
    root = base / "media"
    for key, data in OBJECTS.items():
        write_object(root, key, data)
    outside = base / "secret.m4s"
    outside.write_bytes(b"not published")
    os.symlink(outside, object_file(root, "/v/t1/escape.m4s"))
    os.symlink("h264-360p/seg-00001.m4s", object_file(root, "/v/t1/inside.m4s"))
    os.symlink(base, object_file(root, "/v/t1/up"))
    os.mkfifo(object_file(root, "/v/t1/fifo.m4s"))
    return root


@pytest.fixture(scope="module")
def origin(media_root: Path) -> Iterator[OriginProc]:
    with run_origin(media_root) as proc:
        yield proc


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("/v/t1/master.m3u8", "application/vnd.apple.mpegurl"),
        ("/v/t1/h264-360p/playlist.m3u8", "application/vnd.apple.mpegurl"),
        ("/v/t1/manifest.mpd", "application/dash+xml"),
        ("/v/t1/h264-360p/init.mp4", "video/mp4"),
        (SEG, "video/iso.segment"),
        ("/v/t1/subs/en.vtt", "text/vtt"),
        ("/v/t1/thumbs/0001.jpg", "image/jpeg"),
    ],
)
def test_full_get_carries_type_length_and_validators(
    origin: OriginProc, media_root: Path, key: str, content_type: str
) -> None:
    r = fetch(origin, key)
    assert r.status == 200
    assert r.body == OBJECTS[key]
    assert r.headers["content-type"] == content_type
    assert r.headers["content-length"] == str(len(OBJECTS[key]))
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == xxh3_etag(OBJECTS[key])
    mtime = object_file(media_root, key).stat().st_mtime
    assert r.headers["last-modified"] == email.utils.formatdate(mtime, usegmt=True)


def test_empty_file_is_served_with_zero_length(origin: OriginProc) -> None:
    r = fetch(origin, "/v/t1/empty.m4s")
    assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "0")


def test_etag_is_strong_and_stable(origin: OriginProc) -> None:
    first = fetch(origin, SEG).headers["etag"]
    assert not first.startswith("W/")
    assert fetch(origin, SEG).headers["etag"] == first
    assert fetch(origin, SEG, "HEAD").headers["etag"] == first


def test_head_has_the_get_headers_and_no_body(origin: OriginProc) -> None:
    get = fetch(origin, SEG)
    head = fetch(origin, SEG, "HEAD")
    assert head.status == 200
    assert head.body == b""
    assert {k: v for k, v in head.headers.items() if k != "date"} == {
        k: v for k, v in get.headers.items() if k != "date"
    }


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=-100", 900, 999),
        ("bytes=100-", 100, 999),
        ("bytes=990-5000", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=999-999", 999, 999),
    ],
)
def test_single_range_is_206_with_content_range(
    origin: OriginProc, spec: str, start: int, end: int
) -> None:
    r = fetch(origin, SEG, headers={"Range": spec})
    assert r.status == 206
    assert r.headers["content-range"] == f"bytes {start}-{end}/1000"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.body == SEG_DATA[start : end + 1]
    assert r.headers["etag"] == xxh3_etag(SEG_DATA)


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_is_416(origin: OriginProc, spec: str) -> None:
    r = fetch(origin, SEG, headers={"Range": spec})
    assert r.status == 416
    assert r.headers["content-range"] == "bytes */1000"
    assert r.body == b""


@pytest.mark.parametrize("spec", ["bytes=abc", "items=0-1", "bytes=5-1", "bytes=", "bytes=--1"])
def test_malformed_range_is_400(origin: OriginProc, spec: str) -> None:
    assert fetch(origin, SEG, headers={"Range": spec}).status == 400


def test_multi_range_gets_the_whole_body(origin: OriginProc) -> None:
    r = fetch(origin, SEG, headers={"Range": "bytes=0-1,5-6"})
    assert (r.status, r.body) == (200, SEG_DATA)


def test_head_ignores_range(origin: OriginProc) -> None:
    r = fetch(origin, SEG, "HEAD", headers={"Range": "bytes=0-99"})
    assert (r.status, r.headers["content-length"]) == (200, "1000")


def test_if_range_with_current_validator_honours_range(origin: OriginProc) -> None:
    head = fetch(origin, SEG, "HEAD").headers
    for validator in (head["etag"], head["last-modified"]):
        r = fetch(origin, SEG, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert (r.status, r.body) == (206, SEG_DATA[:10])


@pytest.mark.parametrize("validator", ['"0000"', 'W/"x"', "Mon, 01 Jan 2001 00:00:00 GMT"])
def test_if_range_with_other_validator_sends_everything(origin: OriginProc, validator: str) -> None:
    r = fetch(origin, SEG, headers={"Range": "bytes=0-9", "If-Range": validator})
    assert (r.status, r.body) == (200, SEG_DATA)


def test_if_none_match_is_304_without_body(origin: OriginProc) -> None:
    etag = fetch(origin, SEG, "HEAD").headers["etag"]
    for value in (etag, f'"nope", {etag}', "*", f"W/{etag}"):
        for method in ("GET", "HEAD"):
            r = fetch(origin, SEG, method, headers={"If-None-Match": value})
            assert r.status == 304, value
            assert r.body == b""
            assert r.headers["etag"] == etag
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert fetch(origin, SEG, headers={"If-None-Match": '"nope"'}).status == 200


def test_if_modified_since(origin: OriginProc) -> None:
    last_modified = fetch(origin, SEG, "HEAD").headers["last-modified"]
    assert fetch(origin, SEG, headers={"If-Modified-Since": last_modified}).status == 304
    later = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert fetch(origin, SEG, headers={"If-Modified-Since": later}).status == 304
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    r = fetch(origin, SEG, headers={"If-Modified-Since": earlier})
    assert (r.status, r.body) == (200, SEG_DATA)


def test_if_none_match_wins_over_if_modified_since(origin: OriginProc) -> None:
    last_modified = fetch(origin, SEG, "HEAD").headers["last-modified"]
    headers = {"If-None-Match": '"other"', "If-Modified-Since": last_modified}
    assert fetch(origin, SEG, headers=headers).status == 200


@pytest.mark.parametrize(
    "target",
    [
        "/v/../etc/passwd",
        "/v/a%2f..",
        "/v/t1/%2e%2e/%2e%2e/etc/passwd",
        "/v/t1/../../etc/passwd",
        "/x",
        "/",
        "/v/t1",
        "/v/t1/.hidden",
        "/v/bad.id/master.m3u8",
        "/t/k1.99.sig/v/t1/master.m3u8",
        "http://example.com/v/t1/master.m3u8",
    ],
)
def test_bad_paths_are_400(origin: OriginProc, target: str) -> None:
    r = fetch(origin, target)
    assert r.status == 400, r.body
    assert b"root:" not in r.body


@pytest.mark.parametrize(
    "target",
    [
        "/v/t1/missing.m4s",
        "/v/nope/master.m3u8",
        "/v/t1/h264-360p",  # a directory
        "/v/t1/escape.m4s",  # symlink to a file outside the media root
        "/v/t1/up/secret.m4s",  # symlinked directory outside the media root
        "/v/t1/fifo.m4s",  # not a regular file (and must not block the server)
    ],
)
def test_missing_and_escaping_objects_are_404(origin: OriginProc, target: str) -> None:
    r = fetch(origin, target)
    assert r.status == 404
    assert b"not published" not in r.body


def test_symlink_inside_the_root_is_served(origin: OriginProc) -> None:
    r = fetch(origin, "/v/t1/inside.m4s")
    assert (r.status, r.body) == (200, SEG_DATA)


def test_query_string_is_ignored(origin: OriginProc) -> None:
    assert fetch(origin, SEG + "?x=1").body == SEG_DATA


def test_other_methods_are_405(origin: OriginProc) -> None:
    assert fetch(origin, SEG, "POST").status == 405
    assert fetch(origin, SEG, "DELETE").status == 405


def test_healthz(origin: OriginProc) -> None:
    assert fetch(origin, "/healthz").status == 200


def test_access_log_lines_are_json(origin: OriginProc) -> None:
    target = SEG + "?probe=access-log"
    fetch(origin, target, headers={"Range": "bytes=0-9"})
    line = origin.wait_for_log(lambda r: r.get("path") == target)
    assert line["logger"] == "origin.access"
    assert (line["method"], line["status"], line["bytes"]) == ("GET", 206, 10)
    assert line["range"] == "bytes=0-9"
    assert isinstance(line["duration_ms"], float)


def test_large_file_is_streamed_not_loaded(origin: OriginProc, media_root: Path) -> None:
    data = random.Random(2).randbytes(BIG_SIZE)
    write_object(media_root, BIG, data)
    server = psutil.Process(origin.proc.pid)
    before = server.memory_info().rss
    conn = http.client.HTTPConnection("127.0.0.1", origin.port, timeout=30)
    try:
        conn.request("GET", BIG)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("content-length") == str(BIG_SIZE)
        digest = xxhash.xxh3_128()
        peak = before
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            peak = max(peak, server.memory_info().rss)
    finally:
        conn.close()
    assert f'"{digest.hexdigest()}"' == xxh3_etag(data)
    assert peak - before < BIG_SIZE // 2, f"origin grew by {(peak - before) >> 20} MiB"


def test_sigterm_exits_zero_and_etag_survives_restart(media_root: Path, tmp_path: Path) -> None:
    with run_origin(media_root, workdir=tmp_path) as other:
        assert fetch(other, SEG).headers["etag"] == xxh3_etag(SEG_DATA)
        assert other.stop() == 0
    assert '"msg":"stopping"' in other.log_text()


def test_sigterm_lets_a_transfer_in_flight_finish(media_root: Path, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(16 * 1024 * 1024)
    write_object(media_root, "/v/drain/h264-720p/seg-00001.m4s", data)
    with run_origin(media_root, workdir=tmp_path) as other:
        conn = http.client.HTTPConnection("127.0.0.1", other.port, timeout=10)
        try:
            conn.request("GET", "/v/drain/h264-720p/seg-00001.m4s")
            resp = conn.getresponse()
            head = resp.read(1 << 20)
            other.proc.send_signal(signal.SIGTERM)
            other.wait_for_log(lambda r: r.get("msg") == "stopping")
            time.sleep(0.5)  # a slow reader: the server must keep the transfer going
            rest = resp.read()
        finally:
            conn.close()
        assert head + rest == data
        assert other.proc.wait(10) == 0


async def test_storage_etag_follows_file_changes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, EtagCache(max_entries=2))
    write_object(tmp_path, "/v/s/a.m4s", b"one")
    first = await storage.stat("/v/s/a.m4s")
    assert first is not None
    assert first.etag == xxh3_etag(b"one")
    path = write_object(tmp_path, "/v/s/a.m4s", b"two!")
    os.utime(path, ns=(1, 1))
    second = await storage.stat("/v/s/a.m4s")
    assert second is not None
    assert (second.size, second.etag) == (4, xxh3_etag(b"two!"))
    assert await storage.stat("/v/s/none.m4s") is None


async def test_storage_refuses_unvalidated_keys(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for key in ("/v/../x", "v/s/a.m4s", "/t/tok/v/s/a.m4s", "/etc/passwd"):
        with pytest.raises(ValueError):
            await storage.open(key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_storage_unreadable_file_is_a_storage_error(tmp_path: Path) -> None:
    path = write_object(tmp_path, "/v/s/a.m4s", b"x")
    path.chmod(0)
    with pytest.raises(StorageError):
        await LocalStorage(tmp_path).stat("/v/s/a.m4s")


async def _wait_up(session: aiohttp.ClientSession, base: str) -> None:
    """Until the in-process server answers /healthz (2 s at most)."""
    for _ in range(100):
        try:
            async with session.get(base + "/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.02)


async def test_sendfile_path_on_the_default_loop(media_root: Path) -> None:
    """The subprocess runs uvloop (chunked copy); here the asyncio loop uses loop.sendfile."""
    port = free_port()
    stop = asyncio.Event()
    app = make_app(LocalStorage(media_root))
    server = asyncio.create_task(serve_until(app, (("127.0.0.1", port),), stop))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_up(session, base)
            async with session.get(base + SEG) as r:
                assert (r.status, await r.read()) == (200, SEG_DATA)
            async with session.get(base + SEG, headers={"Range": "bytes=10-19"}) as r:
                assert (r.status, await r.read()) == (206, SEG_DATA[10:20])
    finally:
        stop.set()
        await server


async def test_v_is_served_while_the_default_thread_pool_is_busy(media_root: Path) -> None:
    """Upload hashing, fsyncs, deletes and catalog calls (which can wait seconds on the
    database lock) run on the default pool; /v/ reads have their own, so fills do not queue."""
    port = free_port()
    stop = asyncio.Event()
    app = make_app(LocalStorage(media_root))
    server = asyncio.create_task(serve_until(app, (("127.0.0.1", port),), stop))
    base = f"http://127.0.0.1:{port}"
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Every default-pool thread stuck (forced: as slow catalog calls would be).
    busy = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_up(session, base)
            async with asyncio.timeout(5):
                async with session.get(base + SEG) as r:
                    assert (r.status, await r.read()) == (200, SEG_DATA)
    finally:
        release.set()
        await asyncio.gather(*busy)
        stop.set()
        await server

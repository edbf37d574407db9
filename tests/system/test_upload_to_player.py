"""The whole write and read path, as `make run` wires it: a file uploaded with
`vodedge-origin ingest` is encoded by a real worker, published by the origin, and played
through a real appliance byte for byte.

Processes: `vodedge-origin serve`, one `vodedge-origin worker`, the `ingest` command, and an
appliance with two workers filling from the origin — all real subprocesses on loopback.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import m3u8
import pytest

from origin.media.tools import Tools, find_tools
from tests.origin.media.conftest import make_clip
from tests.support.appliance_proc import Appliance, run_appliance
from tests.support.origin_proc import OriginProc, object_file, run_origin
from tests.support.procs import Proc, python_module

TOKEN = "system-test-token-0123456789"


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


@pytest.fixture(scope="module")
def tools() -> Tools:
    return find_tools()


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OriginProc, Appliance, Path]]:
    root = tmp_path_factory.mktemp("system")
    media = root / "media"
    pipeline = {"preset": "ultrafast", "chunk_seconds": 2, "poll_s": 0.1, "lease_s": 10.0}
    with run_origin(
        media, workdir=root / "origin", api={"tokens": [TOKEN]}, pipeline=pipeline
    ) as origin:
        assert origin.config is not None
        worker = Proc(
            python_module("origin.cli", "worker", "-c", str(origin.config)),
            root / "worker.log",
            None,
        ).start()
        try:
            with run_appliance(root / "appliance", [origin.base_url]) as appliance:
                yield origin, appliance, root
        finally:
            worker.stop(10)


@pytest.fixture(scope="module")
def video_id(system: tuple[OriginProc, Appliance, Path], tools: Tools) -> str:
    origin, _appliance, root = system
    clip = make_clip(tools, root / "upload.mp4", size="640x360", seconds=5.0, audio_seconds=5.0)
    done = subprocess.run(
        python_module(
            "origin.cli", "ingest", str(clip), "--title", "System test", "--tag", "e2e",
            "--server", origin.base_url, "--token", TOKEN, "--poll-s", "0.2",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[0]


def test_the_catalog_lists_the_published_title(
    system: tuple[OriginProc, Appliance, Path], video_id: str
) -> None:
    origin, _appliance, _root = system
    status, _h, body = get(f"{origin.base_url}/api/v1/videos/{video_id}", TOKEN)
    detail = json.loads(body)
    assert status == 200 and detail["status"] == "READY" and detail["title"] == "System test"
    names = {r["name"] for r in detail["renditions"]}
    assert {"h264-240p", "h264-360p"} <= names and not any("720p" in n for n in names)
    paths = {f["path"] for f in detail["files"]}
    assert f"/v/{video_id}/master.m3u8" in paths and f"/v/{video_id}/manifest.mpd" in paths
    for f in detail["files"]:  # the catalog's sizes are the published files' sizes
        assert object_file(origin.media_root, f["path"]).stat().st_size == f["size"]


def test_a_player_plays_it_through_the_appliance(
    system: tuple[OriginProc, Appliance, Path], video_id: str
) -> None:
    origin, appliance, _root = system
    base = f"{appliance.base_url}/v/{video_id}"
    status, headers, body = get(f"{base}/master.m3u8")
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    master = m3u8.loads(body.decode(), uri=f"{base}/master.m3u8")
    assert master.is_variant and len(master.playlists) >= 2
    fetched = 0
    for variant in [*master.playlists, *master.media]:
        if variant.uri is None:
            continue
        media = m3u8.loads(get(f"{base}/{variant.uri}")[2].decode())
        rendition = variant.uri.rsplit("/", 1)[0]
        names = [media.segment_map[0].uri, *(s.uri for s in media.segments)]
        for name in names:
            key = f"/v/{video_id}/{rendition}/{name}"
            status, headers, data = get(appliance.base_url + key)
            assert status == 200, key
            assert data == object_file(origin.media_root, key).read_bytes(), key
            fetched += 1
    assert fetched >= 6
    # Everything is now stored: a second player is served from the appliance's store.
    status, headers, _ = get(f"{base}/h264-360p/seg-00001.m4s")
    assert headers["Cache-Status"] == "vodedge; hit"

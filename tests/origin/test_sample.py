"""The sample title: made by real ffmpeg and Shaka Packager, read back with m3u8 and ffprobe."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import m3u8
import psutil
import pytest

from origin.cli import main
from origin.sample import (
    AUDIO,
    SEGMENT_TEMPLATE,
    VIDEO_LADDER,
    SampleError,
    ToolError,
    ToolNotFound,
    Tools,
    VideoRendition,
    expected_files,
    ffmpeg_args,
    find_tools,
    make_sample,
    packager_args,
    run_tool,
)
from tests.support.origin_proc import run_origin

RENDITIONS = ["h264-360p", "h264-720p", "aac-128k-en"]
# 12 s in 6 s segments: two per rendition.
LAYOUT = sorted(
    ["master.m3u8", "manifest.mpd"]
    + [
        f"{r}/{name}"
        for r in RENDITIONS
        for name in ("playlist.m3u8", "init.mp4", "seg-00001.m4s", "seg-00002.m4s")
    ]
)


@pytest.fixture(scope="module")
def tools() -> Tools:
    return find_tools()


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "media"
    assert main(["make-sample", "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def title(media_root: Path) -> Path:
    return media_root / "v" / "sample"


def ffprobe_json(tools: Tools, path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(tools.ffprobe), "-v", "error", "-of", "json", *args, str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def joined(title: Path, rendition: str, segment: str, out: Path) -> Path:
    """init.mp4 + one segment: the bytes a player feeds its decoder."""
    out.write_bytes((title / rendition / "init.mp4").read_bytes() + (title / segment).read_bytes())
    return out


def test_layout_is_exactly_the_published_one(media_root: Path, title: Path) -> None:
    files = sorted(str(p.relative_to(title)) for p in title.rglob("*") if p.is_file())
    assert files == LAYOUT
    assert set(expected_files()) <= set(files)
    # nothing left over from staging next to the title
    assert [p.name for p in (media_root / "v").iterdir()] == ["sample"]


def test_master_playlist_parses_with_relative_uris(title: Path) -> None:
    master = m3u8.load(str(title / "master.m3u8"))
    assert master.is_variant
    resolutions = sorted(p.stream_info.resolution for p in master.playlists)
    assert resolutions == [(640, 360), (1280, 720)]
    for p in master.playlists:
        assert p.stream_info.bandwidth > 0
        assert p.stream_info.audio == "audio"
    [audio] = [m for m in master.media if m.type == "AUDIO"]
    assert (audio.language, audio.uri) == ("en", "aac-128k-en/playlist.m3u8")
    uris = [p.uri for p in master.playlists] + [audio.uri]
    assert sorted(uris) == sorted(f"{r}/playlist.m3u8" for r in RENDITIONS)
    for uri in uris:
        assert "://" not in uri
        assert not uri.startswith("/")


@pytest.mark.parametrize("rendition", RENDITIONS)
def test_media_playlists_are_vod_with_six_second_segments(title: Path, rendition: str) -> None:
    playlist = m3u8.load(str(title / rendition / "playlist.m3u8"))
    assert playlist.is_endlist
    assert playlist.playlist_type == "vod"
    assert playlist.segment_map[0].uri == "init.mp4"
    assert [s.uri for s in playlist.segments] == ["seg-00001.m4s", "seg-00002.m4s"]
    assert all(abs(s.duration - 6.0) < 0.1 for s in playlist.segments)
    assert playlist.target_duration <= 7


def test_dash_manifest_is_static_over_the_same_segments(title: Path) -> None:
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.parse(title / "manifest.mpd").getroot()
    assert mpd.get("type") == "static"
    templates = mpd.findall(".//d:Representation/d:SegmentTemplate", ns)
    assert len(templates) == 3
    for t in templates:
        init = t.get("initialization")
        media = t.get("media")
        assert init is not None
        assert media is not None
        assert (title / init).is_file()
        assert (title / media.replace("$Number%05d$", "00002")).is_file()


@pytest.mark.parametrize("video", VIDEO_LADDER, ids=[v.name for v in VIDEO_LADDER])
def test_video_segments_decode_with_keyframes_every_two_seconds(
    tools: Tools, title: Path, tmp_path: Path, video: VideoRendition
) -> None:
    name = video.name
    for n in (1, 2):
        path = joined(title, name, f"{name}/seg-{n:05d}.m4s", tmp_path / f"{n}.mp4")
        info = ffprobe_json(tools, path, "-show_entries", "stream=codec_name,width,height")
        [stream] = info["streams"]
        assert stream["codec_name"] == "h264"
        assert (stream["width"], stream["height"]) == (video.width, video.height)
        frames = ffprobe_json(
            tools, path, "-select_streams", "v", "-skip_frame", "nokey",
            "-show_entries", "frame=pts_time",
        )["frames"]  # fmt: skip
        times = [round(float(f["pts_time"]), 3) for f in frames]
        start = 6.0 * (n - 1)
        assert times == [start, start + 2.0, start + 4.0]


def test_audio_segments_decode(tools: Tools, title: Path, tmp_path: Path) -> None:
    path = joined(title, AUDIO.name, f"{AUDIO.name}/seg-00001.m4s", tmp_path / "a.mp4")
    info = ffprobe_json(tools, path, "-show_entries", "stream=codec_name,sample_rate,channels")
    [stream] = info["streams"]
    assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("aac", "48000", 2)


def test_second_run_skips(
    media_root: Path, title: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (title / "master.m3u8").stat().st_mtime_ns
    assert main(["make-sample", "--out", str(media_root)]) == 0
    assert capsys.readouterr().out.startswith("already present:")
    assert (title / "master.m3u8").stat().st_mtime_ns == before


def test_sample_is_served_by_the_origin(media_root: Path, title: Path) -> None:
    with run_origin(media_root) as origin:
        with urllib.request.urlopen(origin.base_url + "/v/sample/master.m3u8") as r:
            assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert r.read() == (title / "master.m3u8").read_bytes()
        seg = "/v/sample/h264-720p/seg-00001.m4s"
        with urllib.request.urlopen(origin.base_url + seg) as r:
            assert r.headers["Content-Type"] == "video/iso.segment"
            assert r.read() == (title / "h264-720p/seg-00001.m4s").read_bytes()


def test_ffmpeg_args_fix_the_gop(tools: Tools) -> None:
    args = ffmpeg_args(tools.ffmpeg, 12)
    text = " ".join(args)
    assert text.count("-g 48 -keyint_min 48 -sc_threshold 0 -flags +cgop") == len(VIDEO_LADDER)
    assert "duration=12" in text
    assert all(not a.startswith("/") for a in args[1:])  # outputs are relative to the staging dir


def test_packager_args_use_relative_paths_and_the_segment_template(tools: Tools) -> None:
    args = packager_args(tools.packager)
    streams = [a for a in args if a.startswith("in=")]
    assert len(streams) == len(VIDEO_LADDER) + 1
    for s in streams:
        fields = dict(f.split("=", 1) for f in s.split(","))
        assert fields["segment_template"].endswith("/" + SEGMENT_TEMPLATE)
        assert not any(v.startswith("/") for v in fields.values())
    assert "--generate_static_live_mpd" in args


async def test_tool_error_carries_the_stderr_tail(tools: Tools, tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        await run_tool([str(tools.ffmpeg), "-nostdin", "-i", "missing-input.mp4"], cwd=tmp_path)
    assert info.value.returncode not in (0, None)
    assert "missing-input.mp4" in info.value.stderr_tail
    assert "ffmpeg-" in str(info.value)
    assert "No such file" in str(info.value)


async def test_cancelled_tool_is_killed(tools: Tools, tmp_path: Path) -> None:
    endless = [str(tools.ffmpeg), "-nostdin", "-re", "-f", "lavfi", "-i", "nullsrc"]
    endless += ["-f", "null", "-"]
    me = psutil.Process()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await run_tool(endless, cwd=tmp_path)
    assert [p for p in me.children() if p.name().startswith("ffmpeg")] == []


async def test_tool_timeout_is_a_tool_error(tools: Tools, tmp_path: Path) -> None:
    endless = [str(tools.ffmpeg), "-nostdin", "-re", "-f", "lavfi", "-i", "nullsrc"]
    endless += ["-f", "null", "-"]
    with pytest.raises(ToolError) as info:
        await run_tool(endless, cwd=tmp_path, timeout=0.5)
    assert info.value.returncode is None
    assert str(info.value).endswith(" timed out: after 0.5 s")
    assert [p for p in psutil.Process().children() if p.name().startswith("ffmpeg")] == []


async def test_missing_binaries_are_a_sample_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Tools:
        return find_tools(tmp_path)  # no binaries there

    monkeypatch.setattr("origin.sample.find_tools", missing)
    with pytest.raises(SampleError, match="missing or not executable") as info:
        await make_sample(tmp_path / "media")
    assert isinstance(info.value.__cause__, ToolNotFound)
    assert not (tmp_path / "media").exists()


async def test_foreign_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "v" / "sample").mkdir(parents=True)
    (tmp_path / "v" / "sample" / "keep.txt").write_text("mine")
    with pytest.raises(SampleError, match="not overwriting"):
        await make_sample(tmp_path)
    assert (tmp_path / "v" / "sample" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args", [["--video-id", "../x"], ["--video-id", ""], ["--seconds", "0"]])
def test_cli_rejects_bad_sample_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["make-sample", "--out", str(tmp_path), *args]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert not (tmp_path / "v").exists()

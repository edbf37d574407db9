"""End to end on a tiny clip: probe, complexity, ladder, chunks (every rung of a chunk from one
decode, as the pipeline's default chunk job does), join, audio, package, thumbnails; then read
the output back the way a player and a validator would.

Source: 640x360 test pattern at 25 fps, 10 s of video with 10.5 s of mono 44.1 kHz audio (so
the audio must be trimmed, resampled and made stereo), its own GOP of 37 frames (so chunk seeks
land between source keyframes), and a WebVTT file. Plan: two rungs (240p, 360p: nothing above
the source), three chunks of 4 + 4 + 2 s, encoded two at a time.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest

from origin.media.chunks import (
    ChunkPlan,
    concat_chunks,
    encode_audio,
    encode_chunks,
    plan_chunks,
)
from origin.media.complexity import Complexity, measure_complexity
from origin.media.ladder import Rung, plan_ladder
from origin.media.package import (
    AudioInput,
    BandwidthFix,
    SubtitleInput,
    VideoInput,
    package,
)
from origin.media.probe import ProbeLimits, ProbeResult, inspect
from origin.media.thumbs import Thumbnails, make_thumbnails
from origin.media.tools import Tools
from tests.origin.media.conftest import ffprobe_json, keyframe_times, make_clip

PRESET = "veryfast"  # B-frames on, unlike ultrafast: the joins must handle reordering
PARALLEL = 2
SUBTITLES = """WEBVTT

00:00:01.000 --> 00:00:03.000
Hello

00:00:07.000 --> 00:00:09.500
World
"""


@dataclass
class Title:
    out: Path
    probe: ProbeResult
    complexity: Complexity
    rungs: list[Rung]
    plan: ChunkPlan
    fixes: list[BandwidthFix]
    thumbs: Thumbnails
    seconds: dict[str, float] = field(default_factory=dict)


async def build(tools: Tools, work: Path) -> Title:
    seconds: dict[str, float] = {}
    started = time.monotonic()

    async def timed(name: str, aw: Awaitable[object]) -> object:
        t = time.monotonic()
        result = await aw
        seconds[name] = round(time.monotonic() - t, 2)
        return result

    src = make_clip(tools, work / "upload.mp4", size="640x360", seconds=10, audio_seconds=10.5)
    vtt = work / "upload.vtt"
    vtt.write_text(SUBTITLES)
    probe = await inspect(tools, src, ProbeLimits())
    complexity = await measure_complexity(tools, src, probe, count=2, seconds=1.0)
    rungs = plan_ladder(*probe.display_size, complexity.kbps)
    plan = plan_chunks(probe, chunk_seconds=4)

    slots = asyncio.Semaphore(PARALLEL)
    chunk_dir = work / "chunks"
    chunk_dir.mkdir()

    async def one(index: int) -> None:
        async with slots:
            outs = [(r, chunk_dir / f"{r.name}-{index:04d}.mp4") for r in rungs]
            await encode_chunks(tools, src, plan, plan.chunks[index], outs, preset=PRESET)

    jobs = [one(c.index) for c in plan.chunks]
    await timed("encode chunks", asyncio.gather(*jobs))
    joined = {}
    for rung in rungs:
        parts = [chunk_dir / f"{rung.name}-{c.index:04d}.mp4" for c in plan.chunks]
        joined[rung.name] = work / f"{rung.name}.mp4"
        await concat_chunks(tools, parts, joined[rung.name], expected_frames=plan.total_frames)
    audio = AudioInput(work / "audio.mp4")
    await timed("audio", encode_audio(tools, src, probe, audio.path, duration_limit=plan.duration))
    out = work / "title"
    videos = [VideoInput(r.name, joined[r.name]) for r in rungs]
    subs = [SubtitleInput(vtt, "en", "English")]
    fixes = await timed("package", package(tools, out, videos, audio, subs))
    thumbs = await timed(
        "thumbs",
        make_thumbnails(
            tools,
            joined[rungs[0].name],
            out / "thumbs",
            duration=float(plan.duration),
            width=rungs[0].width,
            height=rungs[0].height,
            keyframes_only=True,
        ),
    )
    seconds["total"] = round(time.monotonic() - started, 2)
    assert isinstance(fixes, list) and isinstance(thumbs, Thumbnails)
    return Title(out, probe, complexity, rungs, plan, fixes, thumbs, seconds)


@pytest.fixture(scope="module")
def title(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Title:
    return asyncio.run(build(tools, tmp_path_factory.mktemp("pipeline")))


VIDEO = ["h264-240p", "h264-360p"]
AUDIO = "aac-128k-en"


def test_the_plan(title: Title) -> None:
    assert [(r.name, r.width, r.height) for r in title.rungs] == [
        ("h264-240p", 426, 240),
        ("h264-360p", 640, 360),
    ]
    assert [c.frames for c in title.plan.chunks] == [100, 100, 50]
    assert title.plan.duration == 10
    assert title.complexity.kbps > 0
    print(f"\ntimings (s): {title.seconds}; complexity {title.complexity.kbps:.0f} kbps")
    assert title.seconds["total"] < 45


def test_master_playlist(title: Title) -> None:
    master = m3u8.load(str(title.out / "master.m3u8"))
    assert master.is_variant
    variants = sorted(master.playlists, key=lambda p: p.stream_info.bandwidth)
    assert [p.uri for p in variants] == [f"{v}/playlist.m3u8" for v in VIDEO]
    assert [p.stream_info.resolution for p in variants] == [(426, 240), (640, 360)]
    for p in variants:
        codecs = p.stream_info.codecs.split(",")
        assert codecs[0].startswith("avc1.64") and codecs[1] == "mp4a.40.2"
        assert (p.stream_info.audio, p.stream_info.subtitles) == ("audio", "subs")
        assert p.stream_info.frame_rate == 25
    by_type = {m.type: m for m in master.media}
    assert (by_type["AUDIO"].uri, by_type["AUDIO"].language) == (f"{AUDIO}/playlist.m3u8", "en")
    assert by_type["AUDIO"].default == "YES"
    assert (by_type["SUBTITLES"].uri, by_type["SUBTITLES"].language) == ("subs/en.m3u8", "en")
    iframes = [p.uri for p in master.iframe_playlists]
    assert sorted(iframes) == [f"{v}/iframe.m3u8" for v in VIDEO]
    for p in master.iframe_playlists:
        assert p.iframe_stream_info.resolution in [(426, 240), (640, 360)]
        assert p.iframe_stream_info.codecs.startswith("avc1.64")
    text = (title.out / "master.m3u8").read_text()
    assert "://" not in text.replace("https://github.com/shaka-project", "")


@pytest.mark.parametrize("rendition", [*VIDEO, AUDIO])
def test_media_playlists_have_six_second_segments(title: Title, rendition: str) -> None:
    playlist = m3u8.load(str(title.out / rendition / "playlist.m3u8"))
    assert playlist.is_endlist and playlist.playlist_type == "vod"
    assert playlist.segment_map[0].uri == "init.mp4"
    assert [s.uri for s in playlist.segments] == ["seg-00001.m4s", "seg-00002.m4s"]
    assert playlist.segments[0].duration == pytest.approx(6.0, abs=0.03)
    assert playlist.target_duration <= 7


@pytest.mark.parametrize("rendition", VIDEO)
def test_iframe_playlists_list_every_idr(title: Title, rendition: str) -> None:
    playlist = m3u8.load(str(title.out / rendition / "iframe.m3u8"))
    assert playlist.is_i_frames_only
    assert [s.duration for s in playlist.segments] == pytest.approx([2.0] * 5)
    assert all(s.byterange for s in playlist.segments)


def test_dash_manifest(title: Title) -> None:
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.parse(title.out / "manifest.mpd").getroot()
    assert mpd.get("type") == "static"
    assert mpd.get("mediaPresentationDuration") == "PT10S"
    kinds = sorted(a.get("contentType") or "" for a in mpd.findall(".//d:AdaptationSet", ns))
    assert kinds == ["audio", "text", "video"]
    reps = mpd.findall(".//d:Representation", ns)
    assert sorted((r.get("width"), r.get("height")) for r in reps if r.get("width")) == [
        ("426", "240"),
        ("640", "360"),
    ]
    for template in mpd.findall(".//d:SegmentTemplate", ns):
        media = template.get("media")
        assert media is not None
        assert (title.out / media.replace("$Number%05d$", "00001")).is_file()
        init = template.get("initialization")
        assert init is None or (title.out / init).is_file()


def joined(title: Title, rendition: str, segments: list[str], out: Path) -> Path:
    data = (title.out / rendition / "init.mp4").read_bytes()
    out.write_bytes(data + b"".join((title.out / rendition / s).read_bytes() for s in segments))
    return out


@pytest.mark.parametrize("rendition", [*VIDEO, AUDIO])
def test_every_segment_decodes_cleanly(
    tools: Tools, title: Title, rendition: str, tmp_path: Path
) -> None:
    segments = sorted(p.name for p in (title.out / rendition).glob("seg-*.m4s"))
    assert segments == ["seg-00001.m4s", "seg-00002.m4s"]
    for seg in segments:
        path = joined(title, rendition, [seg], tmp_path / f"{seg}.mp4")
        result = subprocess.run(
            [str(tools.ffprobe), "-v", "error", "-show_entries", "frame=pts_time", "-of", "csv",
             str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert result.stderr == ""
        assert result.stdout.count("frame,") > 0


def test_idr_frames_aligned_across_rungs_every_two_seconds(
    tools: Tools, title: Title, tmp_path: Path
) -> None:
    times = {}
    for rendition in VIDEO:
        path = joined(title, rendition, ["seg-00001.m4s", "seg-00002.m4s"], tmp_path / "v.mp4")
        times[rendition] = keyframe_times(tools, path)
        frames = ffprobe_json(
            tools, path, "-count_packets", "-show_entries", "stream=nb_read_packets"
        )
        assert int(frames["streams"][0]["nb_read_packets"]) == 250
    assert times["h264-240p"] == times["h264-360p"] == [0.0, 2.0, 4.0, 6.0, 8.0]


def measured(title: Title, playlist_uri: str) -> tuple[float, float]:
    """Peak and average bits/s of one media playlist, from segment sizes (or byte ranges)."""
    path = title.out / playlist_uri
    playlist = m3u8.load(str(path))
    rates, bits, secs = [], 0.0, 0.0
    for s in playlist.segments:
        size = (
            int(s.byterange.split("@")[0]) if s.byterange else (path.parent / s.uri).stat().st_size
        )
        rates.append(size * 8 / s.duration)
        bits += size * 8
        secs += s.duration
    return max(rates), bits / secs


def test_declared_bandwidths_within_ten_percent_of_measured(title: Title) -> None:
    master = m3u8.load(str(title.out / "master.m3u8"))
    audio_peak, audio_avg = measured(title, f"{AUDIO}/playlist.m3u8")
    for p in master.playlists:
        peak, avg = measured(title, p.uri)
        assert p.stream_info.bandwidth == pytest.approx(peak + audio_peak, rel=0.10)
        assert p.stream_info.average_bandwidth == pytest.approx(avg + audio_avg, rel=0.10)
    for p in master.iframe_playlists:
        peak, avg = measured(title, p.uri)
        assert p.iframe_stream_info.bandwidth == pytest.approx(peak, rel=0.10)
        assert p.iframe_stream_info.average_bandwidth == pytest.approx(avg, rel=0.10)
    assert {f.uri for f in title.fixes} == {p.uri for p in master.playlists} | {
        p.uri for p in master.iframe_playlists
    }


def test_audio_never_outlasts_the_video(tools: Tools, title: Title, tmp_path: Path) -> None:
    def total(rendition: str) -> float:
        playlist = m3u8.load(str(title.out / rendition / "playlist.m3u8"))
        return float(sum(s.duration for s in playlist.segments))

    assert total(AUDIO) <= total(VIDEO[0]) == pytest.approx(10.0)
    path = joined(title, AUDIO, ["seg-00001.m4s", "seg-00002.m4s"], tmp_path / "a.mp4")
    info = ffprobe_json(
        tools, path, "-show_entries", "stream=codec_name,sample_rate,channels,duration"
    )
    [stream] = info["streams"]
    assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("aac", "48000", 2)
    # whole AAC frames ending at or before the last video frame: 468 x 1024 samples
    assert Fraction(stream["duration"]) <= 10
    assert float(stream["duration"]) == pytest.approx(468 * 1024 / 48000, abs=1e-3)


def test_subtitles(title: Title) -> None:
    assert (title.out / "subs" / "en.vtt").read_text() == SUBTITLES
    playlist = m3u8.load(str(title.out / "subs" / "en.m3u8"))
    assert [s.uri for s in playlist.segments][:1] == ["en-00001.vtt"]
    assert all((title.out / "subs" / s.uri).is_file() for s in playlist.segments)


def test_thumbnails(tools: Tools, title: Title) -> None:
    thumbs = title.thumbs
    [poster] = ffprobe_json(
        tools, thumbs.poster, "-show_entries", "stream=codec_name,width,height"
    )["streams"]
    assert (poster["codec_name"], poster["width"], poster["height"]) == ("mjpeg", 426, 240)
    [sheet] = thumbs.sheets
    [info] = ffprobe_json(tools, sheet, "-show_entries", "stream=width,height")["streams"]
    assert (info["width"], info["height"]) == (1600, 90)  # 5 tiles of 160x90 in a row of 10
    cues = thumbs.vtt.read_text().split("\n\n")
    assert cues[0] == "WEBVTT"
    assert cues[1] == "00:00:00.000 --> 00:00:02.000\nsprite-001.jpg#xywh=0,0,160,90"
    assert cues[-1].strip() == "00:00:08.000 --> 00:00:10.000\nsprite-001.jpg#xywh=640,0,160,90"


def test_published_names_follow_the_layout(title: Title) -> None:
    files = sorted(str(p.relative_to(title.out)) for p in title.out.rglob("*") if p.is_file())
    for name in files:
        top, _, rest = name.partition("/")
        if not rest:
            assert name in ("master.m3u8", "manifest.mpd")
        elif top in VIDEO or top == AUDIO:
            assert rest in ("init.mp4", "playlist.m3u8", "iframe.m3u8") or (
                rest.startswith("seg-") and rest.endswith(".m4s")
            )
        else:
            assert top in ("subs", "thumbs")

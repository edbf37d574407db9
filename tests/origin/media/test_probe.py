"""Probing uploads: ffprobe JSON parsing, limits, and real bad files rejected with a reason."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from origin.media.probe import (
    ProbeLimits,
    ProbeRejected,
    ProbeResult,
    check_integrity,
    inspect,
    inspect_with_json,
    parse_probe,
    probe_file,
    validate,
)
from origin.media.tools import Tools
from tests.origin.media.conftest import make_clip

LIMITS = ProbeLimits()


def stream(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "index": 0,
        "codec_type": "video",
        "codec_name": "h264",
        "width": 1920,
        "height": 1080,
        "avg_frame_rate": "30000/1001",
        "r_frame_rate": "30000/1001",
        "pix_fmt": "yuv420p",
        "sample_aspect_ratio": "1:1",
        "start_time": "0.000000",
        "duration": "12.012000",
    }
    return base | fields


def ffprobe_output(*streams: dict[str, Any], **fmt: Any) -> dict[str, Any]:
    base_format = {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "12.1", "start_time": "0"}
    return {"streams": list(streams), "format": base_format | fmt}


def good() -> ProbeResult:
    audio = {"index": 1, "codec_type": "audio", "codec_name": "aac", "channels": 6}
    audio |= {"sample_rate": "48000", "start_time": "0.1", "duration": "12.0"}
    return parse_probe(ffprobe_output(stream(), audio), 5_000_000)


def test_parse_a_typical_upload() -> None:
    p = good()
    assert (p.video_codec, p.width, p.height, p.fps) == ("h264", 1920, 1080, Fraction(30000, 1001))
    assert (p.duration, p.video_index, p.video_start, p.rotation) == (12.012, 0, 0.0, 0)
    assert (p.has_audio, p.audio_index, p.audio_channels, p.audio_sample_rate) == (
        True,
        1,
        6,
        48000,
    )
    assert p.audio_start == pytest.approx(0.1)
    assert p.display_size == (1920, 1080)
    assert p.size_bytes == 5_000_000
    validate(p, LIMITS)


def test_rotation_and_anamorphic_pixels_give_the_displayed_size() -> None:
    portrait = stream(side_data_list=[{"side_data_type": "Display Matrix", "rotation": -90}])
    p = parse_probe(ffprobe_output(portrait), 1)
    assert (p.rotation, p.display_size) == (90, (1080, 1920))
    old_tag = parse_probe(ffprobe_output(stream(tags={"rotate": "270"})), 1)
    assert (old_tag.rotation, old_tag.display_size) == (270, (1080, 1920))
    pal = parse_probe(ffprobe_output(stream(width=720, height=576, sample_aspect_ratio="16:15")), 1)
    assert pal.display_size == (768, 576)


def test_cover_art_is_not_video_and_unknown_values_are_zero() -> None:
    cover = stream(codec_name="mjpeg", disposition={"attached_pic": 1})
    audio = {"index": 1, "codec_type": "audio", "codec_name": "mp3"}
    p = parse_probe(ffprobe_output(cover, audio), 1)
    assert not p.has_video and p.has_audio
    odd = parse_probe(ffprobe_output(stream(avg_frame_rate="0/0", r_frame_rate="25/1")), 1)
    assert odd.fps == 25
    mkv = stream(duration=None, tags={"DURATION": "01:02:03.500000000"})
    assert parse_probe(ffprobe_output(mkv), 1).duration == 3723.5
    junk = parse_probe({"streams": [stream(duration="N/A", width=None)], "format": {}}, 1)
    assert (junk.duration, junk.width, junk.format_name) == (0.0, 0, "")
    assert parse_probe({}, 0).video_codec is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"video_codec": None, "has_audio": True}, "no video stream: the file holds audio only"),
        ({"video_codec": None, "has_audio": False}, "no video stream"),
        ({"format_name": "png_pipe"}, "a still image or animation (png_pipe), not a video"),
        ({"format_name": "hls"}, "a playlist or list of other files (hls), not a video file"),
        ({"format_name": "concat"}, "a playlist or list of other files (concat), not a video file"),
        ({"duration": 0.0}, "the video has zero or unknown duration"),
        ({"duration": float("nan")}, "the video has zero or unknown duration"),
        ({"duration": 0.4}, "the video is too short: 0.40 s (minimum 1 s)"),
        ({"duration": 5 * 3600 + 125.0}, "the video is too long: 5 h 2 min (maximum 4 h 0 min)"),
        (
            {"width": 7680, "height": 4320},
            "the resolution 7680x4320 is over the limit of 4096x2160",
        ),
        ({"width": 0}, "the video stream has no picture size"),
        ({"size_bytes": 60 * 1024**3}, "the file is 60.0 GiB, over the limit of 50.0 GiB"),
        ({"fps": Fraction(0)}, "the video has no usable frame rate"),
        ({"fps": Fraction(1000)}, "the frame rate 1000 fps is over the limit of 240"),
    ],
)
def test_validate_gives_readable_reasons(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProbeRejected) as info:
        validate(replace(good(), **change), LIMITS)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_portrait_4k_is_within_the_limits() -> None:
    validate(replace(good(), width=2160, height=3840), LIMITS)
    validate(replace(good(), width=4096, height=2160), LIMITS)


def test_check_integrity_measures_the_video_end() -> None:
    p = replace(good(), duration=10.0)
    assert check_integrity(p, "0.000000\n", "7.0,0.04\n9.96,0.04\n8.0,0.04\n") == p
    # on the stream's clock, from the first decoded frame
    assert check_integrity(p, "1.400000\n", "11.36,0.04\n").duration == pytest.approx(10.0)
    # a container declaring more than the video holds: the video's own end wins
    assert check_integrity(p, "0.0\n", "9.5,0.04\n").duration == pytest.approx(9.54)
    assert check_integrity(p, "N/A\n", "9.96,N/A\n").duration == pytest.approx(9.96)


@pytest.mark.parametrize(
    ("head", "tail", "reason"),
    [
        ("", "9.96,0.04", "the video cannot be decoded (codec h264)"),
        ("0.0", "", "the file is truncated: no video data near its end"),
        ("0.0", "4.0,0.04\n", "the file is truncated: video data ends at 4.0 s of 10.0 s"),
    ],
)
def test_check_integrity_rejects(head: str, tail: str, reason: str) -> None:
    with pytest.raises(ProbeRejected) as info:
        check_integrity(replace(good(), duration=10.0), head, tail)
    assert info.value.reason == reason


@pytest.fixture(scope="module")
def bad_files(tools: Tools, clip_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    files["text"] = clip_dir / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 50)
    whole = make_clip(tools, clip_dir / "whole.mp4", seconds=3.0, audio_seconds=3.0)
    files["truncated"] = clip_dir / "truncated.mp4"  # index (moov) at the end: cut off
    files["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    fast = make_clip(
        tools, clip_dir / "fast.mp4", seconds=3.0, gop=25, extra=("-movflags", "+faststart")
    )
    files["truncated_faststart"] = clip_dir / "truncated_faststart.mp4"  # index intact, data cut
    files["truncated_faststart"].write_bytes(fast.read_bytes()[: fast.stat().st_size // 3])
    files["audio_only"] = make_clip(tools, clip_dir / "voice.m4a", size="", audio_seconds=2.0)
    files["image"] = make_clip(
        tools, clip_dir / "still.jpg", seconds=1, extra=("-frames:v", "1", "-c:v", "mjpeg")
    )
    files["raw_h264"] = make_clip(tools, clip_dir / "raw.h264", seconds=1)
    files["empty"] = clip_dir / "empty.mp4"
    files["empty"].write_bytes(b"")
    return files


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("text", "not a media file (Invalid data found when processing input)"),
        ("truncated", "not a media file (Invalid data found when processing input)"),
        ("truncated_faststart", "the file is truncated: video data ends at"),
        ("audio_only", "no video stream: the file holds audio only"),
        ("image", "a still image or animation (image2), not a video"),
        ("raw_h264", "the video has zero or unknown duration"),  # an elementary stream
        ("empty", "not a media file ("),
    ],
)
async def test_bad_uploads_are_rejected_with_a_reason(
    tools: Tools, bad_files: dict[str, Path], name: str, reason: str
) -> None:
    with pytest.raises(ProbeRejected) as info:
        await inspect(tools, bad_files[name], LIMITS)
    assert info.value.reason.startswith(reason)
    assert str(bad_files[name]) not in info.value.reason  # our paths stay out of the reason


async def test_a_valid_tiny_clip_passes(tools: Tools, small_clip: Path) -> None:
    p = await inspect(tools, small_clip, LIMITS)
    assert (p.video_codec, p.display_size, p.fps, p.pix_fmt) == (
        "h264",
        (320, 180),
        Fraction(25),
        "yuv420p",
    )
    assert p.duration == pytest.approx(4.0)
    assert (p.has_audio, p.audio_channels, p.audio_sample_rate) == (True, 1, 44100)
    assert p.size_bytes == await asyncio.to_thread(os.path.getsize, small_clip)


async def test_the_probe_json_comes_from_the_same_run(tools: Tools, small_clip: Path) -> None:
    p, data = await inspect_with_json(tools, small_clip, LIMITS)
    assert p == await inspect(tools, small_clip, LIMITS)
    assert parse_probe(data, p.size_bytes) == await probe_file(tools, small_clip)
    assert [s["codec_type"] for s in data["streams"]] == ["video", "audio"]


async def test_limits_apply_to_real_files(tools: Tools, small_clip: Path) -> None:
    with pytest.raises(ProbeRejected, match="too long"):
        await inspect(tools, small_clip, ProbeLimits(max_duration=2.0))
    with pytest.raises(ProbeRejected, match=r"over the limit of 1\.0 KiB"):
        await inspect(tools, small_clip, ProbeLimits(max_file_size=1024))

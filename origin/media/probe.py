"""What an upload is: ffprobe's JSON turned into a :class:`ProbeResult`, and whether we take it.

Pure parts: :func:`probe_args`, :func:`parse_probe` (ffprobe JSON -> :class:`ProbeResult`),
:func:`validate` (limits -> :class:`ProbeRejected` with a reason a creator can read),
:func:`check_integrity` (the decode check's output -> :class:`ProbeRejected`, or the result
with the video duration measured from its last packets).

Async parts: :func:`probe_file` (one ffprobe run; a file ffprobe cannot read at all is rejected as
"not a media file"), and :func:`inspect` = probe + validate + a cheap decode check (first frame
decodes, packets reach the end). :func:`probe_with_json` and :func:`inspect_with_json` also return
ffprobe's parsed JSON, so callers that need more of it (:func:`origin.media.tracks.parse_tracks`) do
not run ffprobe again. The decode check catches what the container header hides: a codec this ffmpeg
build cannot decode (e.g. AV1: no decoder in the wheel) and a "fast start" MP4 cut short after its
index.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, TypedDict

from origin.media.tools import MediaError, Tools, run

PROBE_TIMEOUT = 60.0
"""Seconds one ffprobe run may take (it reads headers and a few packets, never the file)."""
TAIL_CHECK_SECONDS = 3.0
"""The decode check reads packets from this far before the end of the video to its end."""
TAIL_SLACK_SECONDS = 1.0
"""Packets must reach this close to the declared end of the video, or the file is truncated."""
_REFERENCE_FORMATS = frozenset({"hls", "applehttp", "dash", "concat", "ffconcat"})
"""Containers that only point at other files or URLs: never encoded (the encoder would read
whatever they name)."""
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "apng", "webp")


class ProbeRejected(Exception):
    """The upload is not a video we can publish; ``reason`` is shown to its creator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    """What the origin accepts. Times in seconds, sizes in bytes, dimensions in pixels."""

    max_duration: float = 4 * 3600.0
    """A feature film with margin; longer uploads are usually recordings left running."""
    min_duration: float = 1.0
    """Shorter is a still image or a broken file, not a title."""
    max_long_side: int = 4096
    """Longer side of the displayed picture: DCI 4K."""
    max_short_side: int = 2160
    """Shorter side of the displayed picture: the top rung's height."""
    max_file_size: int = 50 * 1024**3
    """Bytes of the uploaded file."""
    max_fps: float = 240.0
    """Higher rates are bogus timestamps; up to this we convert down to at most 60 fps."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The facts of one upload the pipeline needs. Times in seconds.

    ``video_codec`` is ``None`` when there is no video stream (cover art does not count); the
    other video fields are then zero.
    """

    format_name: str
    size_bytes: int
    duration: float
    """Of the video stream (of the container when the stream declares none); 0 if unknown."""
    video_codec: str | None
    video_index: int
    """Stream index for ``-map 0:{index}``."""
    video_start: float
    """Start of the video stream relative to the start of the file (ffmpeg's ``-ss`` origin)."""
    width: int
    height: int
    """Coded size; see :attr:`display_size` for what a viewer sees."""
    sample_aspect: Fraction
    fps: Fraction
    """Average frame rate; 0 when ffprobe does not know it."""
    pix_fmt: str
    rotation: int
    """Degrees clockwise (0, 90, 180, 270) the picture is turned for display."""
    has_audio: bool = False
    audio_index: int | None = None
    audio_codec: str | None = None
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    audio_start: float | None = None
    """Start of the audio stream relative to the start of the file."""
    audio_duration: float | None = None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: square pixels, after rotation (what ffmpeg decodes to)."""
        width = self.width
        if self.sample_aspect > 0 and self.sample_aspect != 1:
            width = max(1, round(self.width * self.sample_aspect))
        if self.rotation in (90, 270):
            return self.height, width
        return width, self.height


def probe_args(ffprobe: Path, path: Path) -> list[str]:
    return [
        str(ffprobe),
        "-hide_banner",
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        # An upload is a local file, never a playlist of URLs (hls, dash, concat...): ffprobe
        # may open nothing but files, so a crafted upload cannot make it fetch or read others.
        "-protocol_whitelist",
        "file",
        str(path),
    ]


def parse_probe(data: Mapping[str, Any], size_bytes: int) -> ProbeResult:
    """ffprobe's ``-show_format -show_streams`` JSON -> :class:`ProbeResult`. Never raises on
    missing or odd fields: unknown values come out as zero/empty for :func:`validate` to judge.
    """
    fmt: Mapping[str, Any] = data.get("format") or {}
    streams: list[Mapping[str, Any]] = list(data.get("streams") or [])
    format_start = _float(fmt.get("start_time"))
    video = next((s for s in streams if _is_video(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    format_duration = _float(fmt.get("duration"))
    audio_fields = _audio_fields(audio, format_start, format_duration)
    if video is None:
        return ProbeResult(
            format_name=str(fmt.get("format_name") or ""),
            size_bytes=size_bytes,
            duration=format_duration,
            video_codec=None,
            video_index=0,
            video_start=0.0,
            width=0,
            height=0,
            sample_aspect=Fraction(1),
            fps=Fraction(0),
            pix_fmt="",
            rotation=0,
            **audio_fields,
        )
    fps = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate"))
    return ProbeResult(
        format_name=str(fmt.get("format_name") or ""),
        size_bytes=size_bytes,
        duration=_float(video.get("duration")) or _tag_duration(video) or format_duration,
        video_codec=str(video.get("codec_name") or "unknown"),
        video_index=_int(video.get("index")),
        video_start=max(0.0, _float(video.get("start_time")) - format_start),
        width=_int(video.get("width")),
        height=_int(video.get("height")),
        sample_aspect=_fraction(video.get("sample_aspect_ratio"), sep=":") or Fraction(1),
        fps=fps,
        pix_fmt=str(video.get("pix_fmt") or ""),
        rotation=_rotation(video),
        **audio_fields,
    )


class _AudioFields(TypedDict, total=False):
    has_audio: bool
    audio_index: int
    audio_codec: str
    audio_channels: int | None
    audio_sample_rate: int | None
    audio_start: float
    audio_duration: float


def _audio_fields(
    audio: Mapping[str, Any] | None, format_start: float, format_duration: float
) -> _AudioFields:
    if audio is None:
        return {"has_audio": False}
    return {
        "has_audio": True,
        "audio_index": _int(audio.get("index")),
        "audio_codec": str(audio.get("codec_name") or ""),
        "audio_channels": _int(audio.get("channels")) or None,
        "audio_sample_rate": _int(audio.get("sample_rate")) or None,
        "audio_start": max(0.0, _float(audio.get("start_time")) - format_start),
        "audio_duration": _float(audio.get("duration")) or format_duration,
    }


def validate(probe: ProbeResult, limits: ProbeLimits) -> None:
    """Raise :class:`ProbeRejected` with a readable reason unless the upload is within limits."""
    if not probe.has_video:
        if probe.has_audio:
            raise ProbeRejected("no video stream: the file holds audio only")
        raise ProbeRejected("no video stream")
    if set(probe.format_name.split(",")) & _REFERENCE_FORMATS:
        raise ProbeRejected(
            f"a playlist or list of other files ({probe.format_name}), not a video file"
        )
    if any(part in probe.format_name for part in _IMAGE_FORMATS):
        raise ProbeRejected(f"a still image or animation ({probe.format_name}), not a video")
    if not math.isfinite(probe.duration) or probe.duration <= 0:
        raise ProbeRejected("the video has zero or unknown duration")
    if probe.duration < limits.min_duration:
        raise ProbeRejected(
            f"the video is too short: {probe.duration:.2f} s "
            f"(minimum {_duration_text(limits.min_duration)})"
        )
    if probe.duration > limits.max_duration:
        raise ProbeRejected(
            f"the video is too long: {_duration_text(probe.duration)} "
            f"(maximum {_duration_text(limits.max_duration)})"
        )
    width, height = probe.display_size
    if width <= 0 or height <= 0:
        raise ProbeRejected("the video stream has no picture size")
    if max(width, height) > limits.max_long_side or min(width, height) > limits.max_short_side:
        raise ProbeRejected(
            f"the resolution {width}x{height} is over the limit of "
            f"{limits.max_long_side}x{limits.max_short_side}"
        )
    if probe.size_bytes > limits.max_file_size:
        raise ProbeRejected(
            f"the file is {_size_text(probe.size_bytes)}, over the limit of "
            f"{_size_text(limits.max_file_size)}"
        )
    if probe.fps <= 0:
        raise ProbeRejected("the video has no usable frame rate")
    if probe.fps > limits.max_fps:
        raise ProbeRejected(
            f"the frame rate {float(probe.fps):.0f} fps is over the limit of {limits.max_fps:g}"
        )


def head_check_args(ffprobe: Path, path: Path, probe: ProbeResult) -> list[str]:
    """Decode the first video frame; prints one CSV line per decoded frame."""
    return [
        str(ffprobe),
        "-hide_banner",
        "-v",
        "error",
        "-threads",
        "1",
        "-select_streams",
        f"{probe.video_index}",
        "-read_intervals",
        "%+#1",
        "-show_entries",
        "frame=best_effort_timestamp_time",
        "-of",
        "csv=p=0",
        str(path),
    ]


def tail_check_args(ffprobe: Path, path: Path, probe: ProbeResult) -> list[str]:
    """List the video packets of the last seconds (demux only, no decoding)."""
    start = max(0.0, probe.duration - TAIL_CHECK_SECONDS)
    return [
        str(ffprobe),
        "-hide_banner",
        "-v",
        "error",
        "-select_streams",
        f"{probe.video_index}",
        "-read_intervals",
        f"{start:.3f}%",
        "-show_entries",
        "packet=pts_time,duration_time",
        "-of",
        "csv=p=0",
        str(path),
    ]


def check_integrity(probe: ProbeResult, head_csv: str, tail_csv: str) -> ProbeResult:
    """Judge the decode check's output: raise :class:`ProbeRejected` if the file is unusable,
    else return ``probe`` with the video's duration as measured from its packets when that is
    shorter than the declared one (containers round up, or declare the longest stream's).

    ``head_csv`` must hold at least one decoded frame; the last packet in ``tail_csv`` must end
    within :data:`TAIL_SLACK_SECONDS` of the video's declared end.
    """
    if not head_csv.strip():
        raise ProbeRejected(f"the video cannot be decoded (codec {probe.video_codec})")
    head = _csv_rows(head_csv)
    ends = [row[0] + (row[1] if len(row) > 1 else 0.0) for row in _csv_rows(tail_csv)]
    if not ends:
        raise ProbeRejected("the file is truncated: no video data near its end")
    # pts_time is on the stream's clock: measure from the first decoded frame.
    reached = max(ends) - (head[0][0] if head else 0.0)
    if reached < probe.duration - TAIL_SLACK_SECONDS:
        raise ProbeRejected(
            f"the file is truncated: video data ends at {reached:.1f} s of {probe.duration:.1f} s"
        )
    return replace(probe, duration=min(probe.duration, reached))


async def probe_file(
    tools: Tools,
    path: Path,
    *,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> ProbeResult:
    """Run ffprobe on ``path``. A file ffprobe cannot read is :class:`ProbeRejected`."""
    probe, _ = await probe_with_json(tools, path, timeout=timeout)
    return probe


async def probe_with_json(
    tools: Tools,
    path: Path,
    *,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> tuple[ProbeResult, dict[str, Any]]:
    """:func:`probe_file`, also returning ffprobe's ``-show_format -show_streams`` JSON."""
    size = await asyncio.to_thread(os.path.getsize, path)
    try:
        out = await run(
            probe_args(tools.ffprobe, path), step="probe", timeout=timeout, capture_stdout=True
        )
    except MediaError as e:
        if e.returncode is None:
            raise
        raise ProbeRejected(f"not a media file ({_last_line(e.stderr_tail, path)})") from None
    try:
        data = json.loads(out)
    except ValueError:
        raise MediaError("probe", 0, "ffprobe wrote no JSON") from None
    return parse_probe(data, size), data


async def inspect(
    tools: Tools,
    path: Path,
    limits: ProbeLimits,
    *,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> ProbeResult:
    """Probe, validate and decode-check an upload: the first step of every job. The result's
    duration is the video's as measured from its last packets (see :func:`check_integrity`)."""
    probe, _ = await inspect_with_json(tools, path, limits, timeout=timeout)
    return probe


async def inspect_with_json(
    tools: Tools,
    path: Path,
    limits: ProbeLimits,
    *,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> tuple[ProbeResult, dict[str, Any]]:
    """:func:`inspect`, also returning ffprobe's JSON from its one probe run (for
    :func:`origin.media.tracks.parse_tracks`)."""
    probe, data = await probe_with_json(tools, path, timeout=timeout)
    validate(probe, limits)
    head = await run(
        head_check_args(tools.ffprobe, path, probe),
        step="decode check",
        timeout=timeout,
        capture_stdout=True,
    )
    tail = await run(
        tail_check_args(tools.ffprobe, path, probe),
        step="truncation check",
        timeout=timeout,
        capture_stdout=True,
    )
    checked = check_integrity(probe, head.decode(errors="replace"), tail.decode(errors="replace"))
    return checked, data


def _is_video(stream: Mapping[str, Any]) -> bool:
    disposition: Mapping[str, Any] = stream.get("disposition") or {}
    return stream.get("codec_type") == "video" and not disposition.get("attached_pic")


def _rotation(stream: Mapping[str, Any]) -> int:
    """Clockwise display rotation from the display matrix (or the old ``rotate`` tag)."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            # ffprobe reports the matrix angle counter-clockwise.
            return round(-_float(side["rotation"]) / 90) * 90 % 360
    tags: Mapping[str, Any] = stream.get("tags") or {}
    if "rotate" in tags:
        return round(_float(tags["rotate"]) / 90) * 90 % 360
    return 0


def _tag_duration(stream: Mapping[str, Any]) -> float:
    """Matroska keeps stream durations in a ``DURATION`` tag: ``"00:00:05.000000000"``."""
    tags: Mapping[str, Any] = stream.get("tags") or {}
    text = str(tags.get("DURATION") or tags.get("duration") or "")
    parts = text.split(":")
    if len(parts) != 3:
        return 0.0
    hours, minutes, seconds = _float(parts[0]), _float(parts[1]), _float(parts[2])
    return hours * 3600 + minutes * 60 + seconds


def _float(value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return 0.0
    return result if math.isfinite(result) else 0.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _fraction(value: Any, sep: str = "/") -> Fraction:
    """``"30000/1001"`` -> Fraction; ``"0/0"``, ``"N/A"`` or junk -> 0."""
    if not isinstance(value, str):
        return Fraction(0)
    num, _, den = value.partition(sep)
    try:
        n, d = int(num), int(den or "1")
    except ValueError:
        return Fraction(0)
    return Fraction(n, d) if n > 0 and d > 0 else Fraction(0)


def _csv_rows(csv: str) -> list[list[float]]:
    """Rows of numbers; a row whose first field is not a number (``N/A``) is skipped and a
    later non-number ends its row."""
    rows = []
    for line in csv.splitlines():
        row: list[float] = []
        for field in line.strip().split(","):
            try:
                row.append(float(field))
            except ValueError:
                break
        if row:
            rows.append(row)
    return rows


def _last_line(stderr: str, path: Path) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "ffprobe could not read it"
    # ffprobe prefixes the message with the path, which is ours, not the creator's.
    return lines[-1].replace(f"{path}: ", "")


def _duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"

"""Output cadence, GOP-aligned chunks, and the encodes that fill them.

Cadence (pure): the output frame rate is the source's, halved until it is at most
:data:`MAX_FPS`, snapped to a standard rate within 1 % (a phone's variable 29.87 fps becomes
30000/1001); one GOP is ``round(fps * 2)`` frames, so IDR frames fall every 2 s (2.002 s at
NTSC rates), at the same frame numbers in every rung. Standard rates: :data:`STANDARD_RATES`.

Chunks (pure, :func:`plan_chunks`): the title's frames are cut into runs of whole GOPs of about
:data:`CHUNK_SECONDS`, every boundary an IDR position of the output cadence; the last chunk
takes the remainder. Chunks are planned in frame numbers, never seconds, so a boundary cannot
drift by rounding.

Encoding one chunk (:func:`video_args`): input seeking to half a frame before the chunk's first
frame (``-ss`` before ``-i`` decodes from the previous source keyframe and drops frames before
the position: accurate and fast), ``setpts=PTS-STARTPTS`` so the chunk starts at 0, the ``fps``
filter for a constant rate, scaling, and ``-frames:v`` for the exact frame count. GOP control is
belt and braces: encoder keyint = min-keyint = GOP, scene-cut keyframes off, closed GOPs, and
``-force_key_frames expr:eq(mod(n,GOP),0)``. x264 runs with ``stitchable=1`` so every chunk's
SPS/PPS are identical; :func:`concat_chunks` checks that (extradata hash) before joining the
chunks with the concat demuxer and ``-c copy``, which offsets each chunk's timestamps by the
durations before it. Each chunk's frame count is checked after encoding and the total after
joining.

Several rungs of one chunk from one decode (:func:`rungs_args`): one ffmpeg decodes the chunk
once and feeds ``-filter_complex`` ``setpts,fps,split=N`` into one ``scale`` per rung and N
outputs, each with exactly its rung's encoder options (:func:`codec_args`) and ``-frames:v``.
Every output sees the same frames numbered from 0 after ``fps``, so the forced keyframes (and
the IDR alignment across rungs) are those of one encode per rung; each output is checked like a
single encode (:func:`chunk_problem`). With a heavy mezzanine decoding is about half the CPU of
a one-rung encode, so N rungs from one decode save up to N-1 decodes per chunk.

Audio (:func:`audio_args`): encoded once, AAC-LC stereo 48 kHz at :data:`AUDIO_KBPS`, shifted to
the video's clock (silence prepended when audio starts late, trimmed when it starts early) and
cut to whole AAC frames (1024 samples) ending at or before the video's end
(:func:`audio_sample_limit`), so no audio segment outlasts the video.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from origin.media.ladder import Rung
from origin.media.probe import ProbeRejected, ProbeResult
from origin.media.tools import MediaError, Tools, run

GOP_SECONDS = 2
CHUNK_SECONDS = 12
MAX_FPS = 60
STANDARD_RATES: tuple[Fraction, ...] = tuple(
    Fraction(r)
    for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60")
)
SNAP_TOLERANCE = 0.01
AUDIO_RATE = 48000
AAC_FRAME_SAMPLES = 1024
AUDIO_KBPS = 128
ENCODE_TIMEOUT = 3600.0
"""Seconds one chunk encode may take (a 12 s 2160p HEVC chunk at a slow preset on one core)."""
AUDIO_TIMEOUT = 1800.0
CONCAT_TIMEOUT = 600.0
CHECK_TIMEOUT = 120.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
SVT_AV1_PRESETS = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9}
"""x264 preset names -> SVT-AV1 presets of roughly comparable speed (default 8)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    start_frame: int
    frames: int


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """How a title is cut. Everything a chunk x rung job needs besides the rung."""

    fps: Fraction
    """Output frame rate."""
    gop_frames: int
    total_frames: int
    chunks: tuple[Chunk, ...]
    source_fps: Fraction
    video_index: int
    video_start: float
    """Seconds from the file's start to its first video frame (added to every seek)."""

    @property
    def duration(self) -> Fraction:
        """Seconds of output video."""
        return self.total_frames / self.fps

    def start_seconds(self, chunk: Chunk) -> Fraction:
        return chunk.start_frame / self.fps

    def seek_seconds(self, chunk: Chunk) -> float:
        """Where ffmpeg's input ``-ss`` goes: half a frame before the chunk's first frame, so
        the first kept frame is that one however the source's timestamps round."""
        if chunk.start_frame == 0:
            return 0.0
        half_frame = 0.5 / float(max(self.fps, self.source_fps))
        return self.video_start + float(self.start_seconds(chunk)) - half_frame

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for a job record."""
        return {
            "fps": str(self.fps),
            "gop_frames": self.gop_frames,
            "total_frames": self.total_frames,
            "chunks": [[c.index, c.start_frame, c.frames] for c in self.chunks],
            "source_fps": str(self.source_fps),
            "video_index": self.video_index,
            "video_start": self.video_start,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkPlan:
        return cls(
            fps=Fraction(data["fps"]),
            gop_frames=int(data["gop_frames"]),
            total_frames=int(data["total_frames"]),
            chunks=tuple(Chunk(int(i), int(s), int(n)) for i, s, n in data["chunks"]),
            source_fps=Fraction(data["source_fps"]),
            video_index=int(data["video_index"]),
            video_start=float(data["video_start"]),
        )


def output_fps(source_fps: Fraction, max_fps: int = MAX_FPS) -> Fraction:
    """The constant frame rate the title is encoded at."""
    if source_fps <= 0:
        raise ValueError(f"no frame rate: {source_fps}")
    fps = Fraction(source_fps)
    while fps > max_fps * (1 + SNAP_TOLERANCE):
        fps /= 2
    nearest = min(STANDARD_RATES, key=lambda rate: abs(fps - rate) / rate)
    if abs(fps - nearest) <= nearest * SNAP_TOLERANCE:
        return nearest
    return max(Fraction(1), Fraction(round(fps * 2), 2))


def gop_frames(fps: Fraction, seconds: int = GOP_SECONDS) -> int:
    return max(1, round(fps * seconds))


def frame_count(duration: float, fps: Fraction) -> int:
    """Whole output frames in ``duration`` seconds (a hair of tolerance for float rounding)."""
    return math.floor(duration * fps + 1e-3)


class TooShort(ProbeRejected):
    """The source holds no whole output frame, or has audio and lasts less than one AAC frame:
    nothing can be encoded from it (a permanent rejection, like any :class:`ProbeRejected`)."""


def check_length(probe: ProbeResult, max_fps: int = MAX_FPS) -> None:
    """Raise :class:`TooShort` with a reason a creator can read unless the probed (and
    validated) source has a whole output frame and, with audio, a whole AAC frame within it.

    The probe's minimum duration does not cover this: it judges the declared duration, and the
    one measured from the packets may be shorter by up to the truncation check's slack.
    """
    fps = output_fps(probe.fps, max_fps)
    frames = frame_count(probe.duration, fps)
    if frames <= 0:
        raise TooShort(
            f"the video is too short: no whole frame at {float(fps):g} fps "
            f"in {probe.duration:.3f} s"
        )
    seconds = Fraction(frames) / fps
    if probe.has_audio and audio_sample_limit(seconds) <= 0:
        raise TooShort(
            f"the video is too short: {frames} frame(s), {float(seconds):.3f} s, "
            f"less than one audio frame ({AAC_FRAME_SAMPLES} samples at {AUDIO_RATE} Hz)"
        )


def split_frames(total_frames: int, gop: int, chunk_gops: int) -> tuple[Chunk, ...]:
    """Runs of ``chunk_gops`` whole GOPs; the last takes what is left (at least one frame)."""
    if total_frames <= 0 or gop <= 0 or chunk_gops <= 0:
        raise ValueError(f"cannot split {total_frames} frames by {chunk_gops} x {gop}")
    size = gop * chunk_gops
    starts = range(0, total_frames, size)
    return tuple(Chunk(i, start, min(size, total_frames - start)) for i, start in enumerate(starts))


def plan_chunks(
    probe: ProbeResult,
    *,
    chunk_seconds: int = CHUNK_SECONDS,
    gop_seconds: int = GOP_SECONDS,
    max_fps: int = MAX_FPS,
) -> ChunkPlan:
    """Cut a probed (and validated) source into GOP-aligned chunks of about ``chunk_seconds``;
    :class:`TooShort` if there is nothing to cut (:func:`check_length`)."""
    check_length(probe, max_fps)
    fps = output_fps(probe.fps, max_fps)
    gop = gop_frames(fps, gop_seconds)
    total = frame_count(probe.duration, fps)
    chunk_gops = max(1, round(chunk_seconds / gop_seconds))
    return ChunkPlan(
        fps=fps,
        gop_frames=gop,
        total_frames=total,
        chunks=split_frames(total, gop, chunk_gops),
        source_fps=probe.fps,
        video_index=probe.video_index,
        video_start=probe.video_start,
    )


def video_filter(fps: Fraction, width: int, height: int) -> str:
    """Timestamps from 0, constant rate, scaled (square pixels), 8-bit 4:2:0."""
    return f"setpts=PTS-STARTPTS,fps={fps},scale={width}:{height},setsar=1,format=yuv420p"


def codec_args(rung: Rung, gop: int, *, preset: str, threads: int) -> list[str]:
    """Encoder, bitrate and GOP options of one rung (after the filters, before the output)."""
    rate = [
        "-b:v",
        f"{rung.kbps}k",
        "-maxrate",
        f"{rung.maxrate_kbps}k",
        "-bufsize",
        f"{rung.bufsize_kbps}k",
    ]
    keys = ["-force_key_frames", f"expr:eq(mod(n,{gop}),0)"]
    gop_params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
    if rung.codec == "h264":
        return [
            "-c:v", "libx264", "-preset", preset, "-profile:v", rung.profile, *rate, *keys,
            "-x264-params", f"{gop_params}:stitchable=1", "-threads", str(threads),
        ]  # fmt: skip
    if rung.codec == "hevc":
        pools = f"pools={threads}" + (":frame-threads=1" if threads == 1 else "")
        return [
            "-c:v", "libx265", "-preset", preset, "-profile:v", rung.profile, "-tag:v", "hvc1",
            *rate, *keys, "-x265-params", f"{gop_params}:{pools}:log-level=error",
        ]  # fmt: skip
    # SVT-AV1 takes a peak rate in CRF mode only: plain VBR here, closed GOPs (KEY frames).
    svt_preset = SVT_AV1_PRESETS.get(preset, 8)
    return [
        "-c:v", "libsvtav1", "-preset", str(svt_preset), "-b:v", f"{rung.kbps}k",
        "-g", str(gop), *keys,
        "-svtav1-params", f"rc=1:keyint={gop}:scd=0:irefresh-type=2:lp={threads}",
    ]  # fmt: skip


def video_args(
    ffmpeg: Path,
    src: Path,
    plan: ChunkPlan,
    chunk: Chunk,
    rung: Rung,
    out: Path,
    *,
    preset: str = "veryfast",
    threads: int = 1,
) -> list[str]:
    """One chunk of one rung, as an MP4 that joins cleanly with its neighbours."""
    args = _chunk_input_args(ffmpeg, src, plan, chunk, preset=preset, threads=threads)
    args += ["-map", f"0:{plan.video_index}", "-an", "-sn", "-dn"]
    args += ["-map_metadata", "-1", "-map_chapters", "-1"]
    args += ["-frames:v", str(chunk.frames), "-filter_threads", str(threads)]
    args += ["-filter:v", video_filter(plan.fps, rung.width, rung.height)]
    args += codec_args(rung, plan.gop_frames, preset=preset, threads=threads)
    return [*args, str(out)]


def _chunk_input_args(
    ffmpeg: Path, src: Path, plan: ChunkPlan, chunk: Chunk, *, preset: str, threads: int
) -> list[str]:
    """ffmpeg reading one chunk of the source: decoder threads, input seeking, the input."""
    if preset not in X264_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(X264_PRESETS)}")
    seek = plan.seek_seconds(chunk)
    args = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    args += ["-threads", str(threads)]
    if seek > 0:
        args += ["-ss", f"{seek:.6f}"]
    return [*args, "-i", str(src)]


def ladder_filter(fps: Fraction, rungs: Sequence[Rung], input_label: str) -> str:
    """The ``-filter_complex`` graph of :func:`rungs_args`: one decoded stream made constant
    rate once, split, and scaled per rung into the outputs ``[v0]``, ``[v1]``, …"""
    n = len(rungs)
    splits = "".join(f"[s{i}]" for i in range(n))
    graph = [f"[{input_label}]setpts=PTS-STARTPTS,fps={fps},split={n}{splits}"]
    graph += [
        f"[s{i}]scale={r.width}:{r.height},setsar=1,format=yuv420p[v{i}]"
        for i, r in enumerate(rungs)
    ]
    return ";".join(graph)


def rungs_args(
    ffmpeg: Path,
    src: Path,
    plan: ChunkPlan,
    chunk: Chunk,
    outputs: Sequence[tuple[Rung, Path]],
    *,
    preset: str = "veryfast",
    threads: int = 1,
) -> list[str]:
    """One chunk of several rungs from ONE decode: one output per ``(rung, path)``, each with
    the encoder options, keyframes and frame count :func:`video_args` gives that rung alone.
    One output is exactly :func:`video_args`."""
    if not outputs:
        raise ValueError("no rungs to encode")
    names = [rung.name for rung, _ in outputs]
    if len(set(names)) != len(names) or len({out for _, out in outputs}) != len(outputs):
        raise ValueError(f"rungs or outputs named twice: {names}")
    if len(outputs) == 1:
        [(rung, out)] = outputs
        return video_args(ffmpeg, src, plan, chunk, rung, out, preset=preset, threads=threads)
    args = _chunk_input_args(ffmpeg, src, plan, chunk, preset=preset, threads=threads)
    args += ["-filter_complex_threads", str(threads)]
    rungs = [rung for rung, _ in outputs]
    args += ["-filter_complex", ladder_filter(plan.fps, rungs, f"0:{plan.video_index}")]
    for i, (rung, out) in enumerate(outputs):
        args += ["-map", f"[v{i}]", "-an", "-sn", "-dn", "-map_metadata", "-1"]
        args += ["-map_chapters", "-1", "-frames:v", str(chunk.frames)]
        args += codec_args(rung, plan.gop_frames, preset=preset, threads=threads)
        args.append(str(out))
    return args


def chunk_problem(check: StreamCheck, chunk: Chunk, rung: Rung) -> str | None:
    """What is wrong with an encoded chunk of ``rung``, or None: it must hold the chunk's
    frames at the rung's size."""
    if check.packets == chunk.frames and (check.width, check.height) == (rung.width, rung.height):
        return None
    return (
        f"{rung.name}: wrote {check.packets} frames of {check.width}x{check.height}, expected "
        f"{chunk.frames} of {rung.width}x{rung.height} (source shorter than probed?)"
    )


def audio_sample_limit(video_seconds: Fraction, sample_rate: int = AUDIO_RATE) -> int:
    """Samples in the whole AAC frames that end at or before ``video_seconds``."""
    frames = math.floor(video_seconds * sample_rate / AAC_FRAME_SAMPLES)
    return frames * AAC_FRAME_SAMPLES


def audio_filter(probe: ProbeResult, max_samples: int) -> str:
    """Put the audio on the video's clock, make it 48 kHz stereo, cut it to ``max_samples``."""
    steps = ["asetpts=PTS-STARTPTS"]
    offset = (probe.audio_start or 0.0) - probe.video_start
    if offset >= 0.0005:  # audio starts late: silence first
        steps.append(f"adelay=delays={round(offset * 1000)}:all=1")
    elif offset <= -0.0005:  # audio starts early: drop what precedes the first frame
        steps += [f"atrim=start={-offset:.6f}", "asetpts=PTS-STARTPTS"]
    steps.append(f"aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=stereo")
    steps.append(f"atrim=end_sample={max_samples}")
    return ",".join(steps)


def audio_args(
    ffmpeg: Path, src: Path, probe: ProbeResult, out: Path, *, max_samples: int
) -> list[str]:
    """The title's one audio rendition: AAC-LC stereo, cut to the video's length."""
    if probe.audio_index is None:
        raise ValueError("the source has no audio stream")
    return [
        str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-i", str(src), "-map", f"0:{probe.audio_index}", "-vn", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-filter:a", audio_filter(probe, max_samples),
        "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{AUDIO_KBPS}k", str(out),
    ]  # fmt: skip


def concat_list(paths: Sequence[Path]) -> str:
    """The concat demuxer's list file for ``paths`` (absolute, quoted)."""
    lines = []
    for path in paths:
        quoted = str(Path(path).absolute()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'\n")
    return "ffconcat version 1.0\n" + "".join(lines)


def concat_args(ffmpeg: Path, list_file: Path, out: Path) -> list[str]:
    return [
        str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_file),
        "-map", "0:v:0", "-c", "copy", str(out),
    ]  # fmt: skip


def stream_check_args(ffprobe: Path, path: Path, *, count: bool) -> list[str]:
    """First stream's codec, size, duration, extradata hash (and packet count if ``count``)."""
    args = [str(ffprobe), "-hide_banner", "-v", "error", "-select_streams", "0"]
    if count:
        args.append("-count_packets")
    args += ["-show_data_hash", "sha256", "-show_entries"]
    args.append("stream=codec_name,width,height,duration,nb_read_packets,extradata_hash")
    return [*args, "-of", "default=noprint_wrappers=1", str(path)]


@dataclass(frozen=True, slots=True)
class StreamCheck:
    codec: str
    width: int
    height: int
    duration: float
    packets: int
    """0 unless counted."""
    extradata_hash: str


def parse_stream_check(text: str) -> StreamCheck:
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def number(key: str) -> float:
        try:
            return float(fields.get(key, ""))
        except ValueError:
            return 0.0

    return StreamCheck(
        codec=fields.get("codec_name", ""),
        width=int(number("width")),
        height=int(number("height")),
        duration=number("duration"),
        packets=int(number("nb_read_packets")),
        extradata_hash=fields.get("extradata_hash", ""),
    )


async def check_stream(
    tools: Tools,
    path: Path,
    *,
    count: bool,
    step: str,
    timeout: float = CHECK_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> StreamCheck:
    out = await run(
        stream_check_args(tools.ffprobe, path, count=count),
        step=step,
        timeout=timeout,
        capture_stdout=True,
    )
    return parse_stream_check(out.decode(errors="replace"))


async def encode_chunks(
    tools: Tools,
    src: Path,
    plan: ChunkPlan,
    chunk: Chunk,
    outputs: Sequence[tuple[Rung, Path]],
    *,
    preset: str = "veryfast",
    threads: int = 1,
    timeout: float | None = None,  # noqa: ASYNC109 (see tools.run)
) -> list[StreamCheck]:
    """Encode one chunk of every ``(rung, path)`` with one ffmpeg (one decode,
    :func:`rungs_args`) and check every output's frame count and size; the checks in the
    order of ``outputs``. ``timeout`` defaults to :data:`ENCODE_TIMEOUT` per rung.

    Raises :class:`MediaError` naming every output that fails its check. Idempotent: a retry
    overwrites the outputs; write to temporary names and rename them only once this returns.
    """
    names = "+".join(rung.name for rung, _ in outputs)
    step = f"encode {names} chunk {chunk.index}"
    argv = rungs_args(tools.ffmpeg, src, plan, chunk, outputs, preset=preset, threads=threads)
    limit = ENCODE_TIMEOUT * len(outputs) if timeout is None else timeout
    await run(argv, step=step, timeout=limit)
    checks = [
        await check_stream(tools, out, count=True, step=f"check {rung.name} chunk {chunk.index}")
        for rung, out in outputs
    ]
    problems = [
        problem
        for (rung, _), check in zip(outputs, checks, strict=True)
        if (problem := chunk_problem(check, chunk, rung)) is not None
    ]
    if problems:
        raise MediaError(step, None, "; ".join(problems))
    return checks


async def encode_audio(
    tools: Tools,
    src: Path,
    probe: ProbeResult,
    out: Path,
    *,
    duration_limit: Fraction,
    timeout: float = AUDIO_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> StreamCheck:
    """Encode the audio rendition, never longer than ``duration_limit`` (the video's
    :attr:`ChunkPlan.duration`)."""
    max_samples = audio_sample_limit(duration_limit)
    if max_samples <= 0:
        raise TooShort(
            f"the video is too short: {float(duration_limit):.3f} s, less than one audio frame "
            f"({AAC_FRAME_SAMPLES} samples at {AUDIO_RATE} Hz)"
        )
    argv = audio_args(tools.ffmpeg, src, probe, out, max_samples=max_samples)
    await run(argv, step="encode audio", timeout=timeout)
    check = await check_stream(tools, out, count=False, step="check audio")
    if check.duration > float(duration_limit) + 1e-6:
        raise MediaError(
            "encode audio", None, f"audio lasts {check.duration} s, video {duration_limit} s"
        )
    return check


async def concat_chunks(
    tools: Tools,
    chunk_paths: Sequence[Path],
    out: Path,
    *,
    expected_frames: int | None = None,
    timeout: float = CONCAT_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> StreamCheck:
    """Join the chunks of one rung (in order) into ``out`` without re-encoding.

    Refuses chunks whose codec parameters differ (they would decode wrongly after the join)
    and checks the joined frame count against ``expected_frames`` when given.
    """
    if not chunk_paths:
        raise ValueError("no chunks to join")
    step = f"concat {out.stem}"
    checks = [
        await check_stream(tools, p, count=False, step=f"check {p.name}") for p in chunk_paths
    ]
    for path, check in zip(chunk_paths, checks, strict=True):
        first = checks[0]
        if (check.codec, check.width, check.height, check.extradata_hash) != (
            first.codec,
            first.width,
            first.height,
            first.extradata_hash,
        ):
            raise MediaError(step, None, f"{path.name}: codec parameters differ from the first")
    list_file = out.with_name(out.name + ".concat.txt")
    await asyncio.to_thread(list_file.write_text, concat_list(chunk_paths))
    try:
        await run(concat_args(tools.ffmpeg, list_file, out), step=step, timeout=timeout)
    finally:
        await asyncio.to_thread(_unlink, list_file)
    joined = await check_stream(tools, out, count=True, step=f"check {out.name}")
    if expected_frames is not None and joined.packets != expected_frames:
        raise MediaError(step, None, f"joined {joined.packets} frames, expected {expected_frames}")
    return joined


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

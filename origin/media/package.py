"""Shaka Packager: the joined rungs + audio (+ WebVTT) -> CMAF HLS and DASH over one set of files.

Layout written under ``out_dir`` (DESIGN.md, published file layout)::

    master.m3u8  manifest.mpd
    {rendition}/init.mp4  seg-00001.m4s ...  playlist.m3u8  iframe.m3u8 (video only)
    subs/{lang}.m3u8  subs/{lang}-00001.vtt ...   segmented WebVTT the manifests reference
    subs/{lang}.vtt                               the uploaded file as is, for download

One packager run (:func:`packager_args`) writes everything: 6 s segments
(``--segment_duration``) made of 2 s fragments (``--fragment_duration``), each starting with an
IDR, so the I-frame playlists list every IDR (one per 2 s) as a byte range; a static MPD with
a SegmentTimeline over the same segments (``--generate_static_live_mpd``); a VOD master with
relative URIs, CODECS, RESOLUTION, FRAME-RATE. The packager runs with ``out_dir`` as its working
directory and sees relative paths only; input paths containing a comma (the descriptor
separator) are refused.

Bandwidth: :func:`measure_bandwidths` reads every media playlist with ``m3u8`` and the sizes of
its segments (byte ranges for I-frame playlists): peak = the highest segment bit rate,
average = all bits / all seconds; a variant adds its audio group's rendition with the highest
peak. :func:`fix_master_bandwidths` rewrites BANDWIDTH and AVERAGE-BANDWIDTH of every
``EXT-X-STREAM-INF`` and ``EXT-X-I-FRAME-STREAM-INF`` whose declared value is more than 10 %
off the measured one, or missing; the rest of the master stays byte for byte.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import m3u8

from origin.media.tools import MediaError, Tools, run

SEGMENT_SECONDS = 6
FRAGMENT_SECONDS = 2
SEGMENT_TEMPLATE = "seg-$Number%05d$.m4s"
MASTER = "master.m3u8"
MPD = "manifest.mpd"
PLAYLIST = "playlist.m3u8"
IFRAME_PLAYLIST = "iframe.m3u8"
SUBS_DIR = "subs"
AUDIO_GROUP = "audio"
SUBTITLE_GROUP = "subs"
BANDWIDTH_TOLERANCE = 0.10
PACKAGE_TIMEOUT = 1800.0
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
_BANDWIDTH_RE = re.compile(r"(?<![-A-Z])BANDWIDTH=(\d+)")
_AVERAGE_RE = re.compile(r"AVERAGE-BANDWIDTH=(\d+)")
_URI_RE = re.compile(r'URI="([^"]*)"')


@dataclass(frozen=True, slots=True)
class VideoInput:
    name: str
    """Rendition name, e.g. ``h264-720p``: its directory."""
    path: Path
    """The rung's joined MP4."""


@dataclass(frozen=True, slots=True)
class AudioInput:
    path: Path
    language: str = "en"
    label: str = "English"
    kbps: int = 128

    @property
    def name(self) -> str:
        """Rendition name, e.g. ``aac-128k-en``."""
        return f"aac-{self.kbps}k-{self.language.lower()}"


@dataclass(frozen=True, slots=True)
class SubtitleInput:
    path: Path
    """A WebVTT file."""
    language: str
    label: str


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Bits per second."""

    peak: int
    average: int


@dataclass(frozen=True, slots=True)
class BandwidthFix:
    """One master playlist entry and what :func:`fix_master_bandwidths` did to it."""

    uri: str
    declared: Bandwidth | None
    """``None`` when the packager declared no AVERAGE-BANDWIDTH."""
    measured: Bandwidth
    rewritten: bool


def packager_args(
    packager: Path,
    out_dir: Path,
    videos: Sequence[VideoInput],
    audio: AudioInput | None = None,
    subtitles: Sequence[SubtitleInput] = (),
) -> list[str]:
    """One packager run writing the whole title, with ``out_dir`` as working directory."""
    if not videos:
        raise ValueError("no video rendition to package")
    names = [v.name for v in videos] + ([audio.name] if audio else [])
    if len(set(names)) != len(names) or not all(_NAME_RE.match(n) for n in names):
        raise ValueError(f"rendition names must be unique and [a-z0-9-]: {names}")
    languages = [s.language for s in subtitles] + ([audio.language] if audio else [])
    for text in languages + [s.label for s in subtitles] + ([audio.label] if audio else []):
        if not text or any(c in text for c in ',="\n'):
            raise ValueError(f"language or label {text!r} is empty or has , = or a quote")
    for language in languages:
        if not _LANGUAGE_RE.match(language):
            raise ValueError(f"not a language tag: {language!r}")

    def media(name: str, path: Path, kind: str) -> str:
        return (
            f"in={_relative(path, out_dir)},stream={kind},init_segment={name}/init.mp4,"
            f"segment_template={name}/{SEGMENT_TEMPLATE},playlist_name={name}/{PLAYLIST}"
        )

    args = [str(packager)]
    args += [
        media(v.name, v.path, "video") + f",iframe_playlist_name={v.name}/{IFRAME_PLAYLIST}"
        for v in videos
    ]
    if audio is not None:
        args.append(
            media(audio.name, audio.path, "audio")
            + f",hls_group_id={AUDIO_GROUP},hls_name={audio.label},language={audio.language}"
        )
    for s in subtitles:
        args.append(
            f"in={_relative(s.path, out_dir)},stream=text,"
            f"segment_template={SUBS_DIR}/{s.language}-$Number%05d$.vtt,"
            f"playlist_name={SUBS_DIR}/{s.language}.m3u8,"
            f"hls_group_id={SUBTITLE_GROUP},hls_name={s.label},language={s.language}"
        )
    args += ["--segment_duration", str(SEGMENT_SECONDS)]
    args += ["--fragment_duration", str(FRAGMENT_SECONDS)]
    args += ["--generate_static_live_mpd", "--hls_playlist_type", "VOD"]
    if audio is not None:
        args += ["--default_language", audio.language]
    args += ["--hls_master_playlist_output", MASTER, "--mpd_output", MPD]
    return args


def expected_files(
    videos: Sequence[VideoInput],
    audio: AudioInput | None = None,
    subtitles: Sequence[SubtitleInput] = (),
) -> list[str]:
    """Files every packaged title has, relative to ``out_dir``."""
    files = [MASTER, MPD]
    for name in [v.name for v in videos] + ([audio.name] if audio else []):
        files += [f"{name}/init.mp4", f"{name}/{PLAYLIST}", f"{name}/seg-00001.m4s"]
    files += [f"{v.name}/{IFRAME_PLAYLIST}" for v in videos]
    for s in subtitles:
        files += [f"{SUBS_DIR}/{s.language}.m3u8", f"{SUBS_DIR}/{s.language}.vtt"]
    return files


async def package(
    tools: Tools,
    out_dir: Path,
    videos: Sequence[VideoInput],
    audio: AudioInput | None = None,
    subtitles: Sequence[SubtitleInput] = (),
    *,
    timeout: float = PACKAGE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> list[BandwidthFix]:
    """Package into ``out_dir`` (created; should be empty), then correct the declared
    bandwidths of the master from the files written. Returns what was measured and fixed."""
    args = packager_args(tools.packager, out_dir, videos, audio, subtitles)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    await run(args, step="package", timeout=timeout, cwd=out_dir)
    return await asyncio.to_thread(_finish, out_dir, videos, audio, subtitles)


def _finish(
    out_dir: Path,
    videos: Sequence[VideoInput],
    audio: AudioInput | None,
    subtitles: Sequence[SubtitleInput],
) -> list[BandwidthFix]:
    for s in subtitles:
        shutil.copyfile(s.path, out_dir / SUBS_DIR / f"{s.language}.vtt")
    missing = [f for f in expected_files(videos, audio, subtitles) if not (out_dir / f).is_file()]
    if missing:
        raise MediaError("package", None, f"the packager wrote no {', '.join(missing)}")
    return fix_master_bandwidths(out_dir)


def segment_bandwidth(segments: Sequence[tuple[int, float]]) -> Bandwidth:
    """Peak and average bit rate of ``(bytes, seconds)`` segments."""
    timed = [(size, seconds) for size, seconds in segments if seconds > 0]
    if not timed:
        raise ValueError("no timed segments")
    peak = max(size * 8 / seconds for size, seconds in timed)
    average = sum(size for size, _ in timed) * 8 / sum(seconds for _, seconds in timed)
    return Bandwidth(peak=round(peak), average=round(average))


def measure_playlist(path: Path) -> Bandwidth:
    """Measured bandwidth of one media (or I-frame) playlist. Blocking: reads file sizes."""
    playlist = m3u8.load(str(path))
    base = path.parent
    segments = []
    for seg in playlist.segments:
        if seg.byterange:
            size = int(str(seg.byterange).split("@")[0])
        else:
            size = (base / seg.uri).stat().st_size
        segments.append((size, float(seg.duration)))
    return segment_bandwidth(segments)


def measure_bandwidths(out_dir: Path) -> dict[str, Bandwidth]:
    """Measured bandwidth of every master entry, by URI: variants include their audio.
    Blocking: parses playlists and reads file sizes."""
    master = m3u8.load(str(out_dir / MASTER))
    audio_groups: dict[str, Bandwidth] = {}
    for media in master.media:
        if media.type == "AUDIO" and media.uri:
            bw = measure_playlist(out_dir / media.uri)
            best = audio_groups.get(media.group_id)
            if best is None or bw.peak > best.peak:
                audio_groups[media.group_id] = bw
    result: dict[str, Bandwidth] = {}
    for variant in master.playlists:
        bw = measure_playlist(out_dir / variant.uri)
        group = audio_groups.get(variant.stream_info.audio or "")
        if group is not None:
            bw = Bandwidth(peak=bw.peak + group.peak, average=bw.average + group.average)
        result[variant.uri] = bw
    for iframe in master.iframe_playlists:
        result[iframe.uri] = measure_playlist(out_dir / iframe.uri)
    return result


def rewrite_master(
    text: str, measured: Mapping[str, Bandwidth], tolerance: float = BANDWIDTH_TOLERANCE
) -> tuple[str, list[BandwidthFix]]:
    """Master playlist text with BANDWIDTH/AVERAGE-BANDWIDTH set to ``measured`` (by URI) on
    every entry where the declared values are missing or off by more than ``tolerance``."""
    lines = text.splitlines(keepends=True)
    fixes = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = next((u.strip() for u in lines[i + 1 :] if u.strip() and u[0] != "#"), "")
        elif line.startswith("#EXT-X-I-FRAME-STREAM-INF:"):
            match = _URI_RE.search(line)
            uri = match.group(1) if match else ""
        else:
            continue
        if uri not in measured:
            continue
        lines[i], fix = _fix_line(line, uri, measured[uri], tolerance)
        fixes.append(fix)
    return "".join(lines), fixes


def fix_master_bandwidths(
    out_dir: Path, tolerance: float = BANDWIDTH_TOLERANCE
) -> list[BandwidthFix]:
    """Measure and, where needed, rewrite the master in place (atomically). Blocking."""
    measured = measure_bandwidths(out_dir)
    path = out_dir / MASTER
    text, fixes = rewrite_master(path.read_text(), measured, tolerance)
    if any(f.rewritten for f in fixes):
        tmp = path.with_name(f".{MASTER}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return fixes


def within(declared: Bandwidth, measured: Bandwidth, tolerance: float) -> bool:
    """Both declared values within ``tolerance`` (a fraction) of the measured ones."""
    return (
        abs(declared.peak - measured.peak) <= tolerance * measured.peak
        and abs(declared.average - measured.average) <= tolerance * measured.average
    )


def _fix_line(
    line: str, uri: str, measured: Bandwidth, tolerance: float
) -> tuple[str, BandwidthFix]:
    peak = _BANDWIDTH_RE.search(line)
    average = _AVERAGE_RE.search(line)
    declared = Bandwidth(int(peak.group(1)), int(average.group(1))) if peak and average else None
    if declared is not None and within(declared, measured, tolerance):
        return line, BandwidthFix(uri, declared, measured, rewritten=False)
    line = _BANDWIDTH_RE.sub(f"BANDWIDTH={measured.peak}", line, count=1)
    if average:
        line = _AVERAGE_RE.sub(f"AVERAGE-BANDWIDTH={measured.average}", line, count=1)
    else:
        line = _BANDWIDTH_RE.sub(
            f"BANDWIDTH={measured.peak},AVERAGE-BANDWIDTH={measured.average}", line, count=1
        )
    return line, BandwidthFix(uri, declared, measured, rewritten=True)


def _relative(path: Path, out_dir: Path) -> str:
    rel = os.path.relpath(Path(path).absolute(), Path(out_dir).absolute())
    if "," in rel:
        raise ValueError(f"packager input path must not contain a comma: {rel!r}")
    return rel

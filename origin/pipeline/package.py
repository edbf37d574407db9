"""Stage ``package``: the encoded pieces -> a complete title in a storage staging directory.

Steps, all into directories of this attempt alone:

1. join each rung's chunks (``concat_chunks``: no re-encode; codec parameters and the total
   frame count are checked) into ``{work}/package-{token}/{rung}.mp4``;
2. convert the source's text subtitle tracks (the plan's ``tracks``) to WebVTT there;
3. package everything with Shaka Packager into a fresh ``storage.staging_dir`` (CMAF HLS +
   DASH, the master's BANDWIDTH / AVERAGE-BANDWIDTH set from the measured segments);
4. thumbnails from the rung nearest to 720p (:func:`thumbnail_rung`) into ``thumbs/``;
5. the catalog's rendition rows, read back from the packaged master (:func:`rendition_rows`).

The result names the staging directory and the renditions; ``publish`` renames it into place.
The scratch directory is removed when the attempt ends; the staging directory too if the
attempt fails, is cancelled, or its completion is refused (``undo``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import m3u8

from origin.catalog import Job, Rendition
from origin.media.chunks import concat_chunks
from origin.media.ladder import Rung
from origin.media.package import (
    MASTER,
    PLAYLIST,
    SUBS_DIR,
    AudioInput,
    Bandwidth,
    SubtitleInput,
    VideoInput,
    measure_playlist,
    package,
)
from origin.media.thumbs import make_thumbnails
from origin.media.tracks import extract_subtitle
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import Analysis, PlanPayload, publish_job, rendition_to_json
from origin.pipeline.stage import Context, Done, load_analysis, source_of
from origin.pipeline.workdir import WorkDir, new_token, remove_tree

THUMBS_DIR = "thumbs"
THUMBNAIL_HEIGHT = 720
"""Thumbnails come from the rung whose short side is nearest this without exceeding it."""


@dataclass(frozen=True, slots=True)
class Inputs:
    videos: list[VideoInput]
    audio: AudioInput | None
    subtitles: list[SubtitleInput]


def thumbnail_rung(rungs: Sequence[Rung]) -> Rung:
    """The rung the poster and sprites are cut from: the largest up to 720p (the poster's box),
    or the smallest if every rung is larger."""
    if not rungs:
        raise ValueError("no rungs")
    fitting = [r for r in rungs if min(r.width, r.height) <= THUMBNAIL_HEIGHT]
    if fitting:
        return max(fitting, key=lambda r: r.width * r.height)
    return min(rungs, key=lambda r: r.width * r.height)


def subtitle_rendition(language: str) -> str:
    """The rendition name of a subtitle language (its files are ``subs/{language}…``)."""
    return f"{SUBS_DIR}-{language}"


def rendition_rows(
    master_text: str,
    rungs: Sequence[Rung],
    audio: AudioInput | None,
    audio_bandwidth: Bandwidth | None,
    subtitles: Sequence[SubtitleInput],
) -> list[Rendition]:
    """The catalog's renditions, as the packaged master declares them: sizes, BANDWIDTH (peak,
    with audio) and AVERAGE-BANDWIDTH, CODECS, and the languages in the packager's form."""
    master = m3u8.loads(master_text)
    by_name = {r.name: r for r in rungs}
    languages = {m.uri: m.language for m in master.media if m.uri}
    audio_codec = None
    rows: list[Rendition] = []
    for variant in master.playlists:
        name = str(variant.uri).split("/")[0]
        rung = by_name.get(name)
        if rung is None:
            raise ValueError(f"the master names a rendition {name!r} that is not in the plan")
        info = variant.stream_info
        codecs = [c.strip() for c in str(info.codecs or "").split(",") if c.strip()]
        audio_codec = next((c for c in codecs if c.startswith("mp4a")), audio_codec)
        width, height = info.resolution or (rung.width, rung.height)
        rows.append(
            Rendition(
                name=name,
                kind="video",
                codec=rung.codec,
                width=int(width),
                height=int(height),
                bitrate_bps=info.bandwidth,
                average_bitrate_bps=info.average_bandwidth,
                codecs_string=next((c for c in codecs if not c.startswith("mp4a")), None),
            )
        )
    missing = set(by_name) - {r.name for r in rows}
    if missing:
        raise ValueError(f"the master lacks the renditions {sorted(missing)}")
    if audio is not None:
        rows.append(
            Rendition(
                name=audio.name,
                kind="audio",
                codec="aac",
                bitrate_bps=audio_bandwidth.peak if audio_bandwidth else None,
                average_bitrate_bps=audio_bandwidth.average if audio_bandwidth else None,
                codecs_string=audio_codec,
                language=languages.get(f"{audio.name}/{PLAYLIST}") or audio.language,
            )
        )
    for s in subtitles:
        rows.append(
            Rendition(
                name=subtitle_rendition(s.language),
                kind="subtitle",
                codec="webvtt",
                language=languages.get(f"{SUBS_DIR}/{s.language}.m3u8") or s.language,
            )
        )
    return rows


async def run(ctx: Context, job: Job) -> Done:
    payload = PlanPayload.from_json(job.payload)
    analysis = await load_analysis(ctx, payload.analysis_job)
    work = ctx.work(job.video_id)
    scratch = work.attempt(new_token())
    staging: Path | None = None
    try:
        inputs = await _prepare(ctx, job.video_id, analysis, work, scratch)
        staging = await asyncio.to_thread(_new_staging, ctx, job.video_id)
        fixes = await package(ctx.tools, staging, inputs.videos, inputs.audio, inputs.subtitles)
        thumbs = thumbnail_rung(analysis.rungs)
        await make_thumbnails(
            ctx.tools,
            scratch / f"{thumbs.name}.mp4",
            staging / THUMBS_DIR,
            duration=float(analysis.plan.duration),
            width=thumbs.width,
            height=thumbs.height,
            keyframes_only=True,
        )
        renditions = await asyncio.to_thread(_read_renditions, staging, analysis, inputs)
    except BaseException:
        if staging is not None:
            await remove_tree(staging)
        raise
    finally:
        await remove_tree(scratch)
    return Done(
        result={
            "staging": str(staging),
            "renditions": [rendition_to_json(r) for r in renditions],
            "bandwidth_fixes": sum(1 for f in fixes if f.rewritten),
            "skipped": list(analysis.tracks.skipped),
        },
        then=(publish_job(staging, renditions, ctx.pipeline.max_attempts),),
        undo=(staging,),
    )


async def _prepare(
    ctx: Context, video_id: str, analysis: Analysis, work: WorkDir, scratch: Path
) -> Inputs:
    """Join the rungs and extract the subtitles into ``scratch``."""
    await asyncio.to_thread(scratch.mkdir, parents=True)
    plan = analysis.plan
    parts = {r.name: [work.chunk(r.name, c.index) for c in plan.chunks] for r in analysis.rungs}
    needed = [p for paths in parts.values() for p in paths]
    if analysis.probe.has_audio:
        needed.append(work.audio)
    missing = await asyncio.to_thread(_missing, work, needed)
    if missing:
        raise Rejected(
            f"encoded pieces are gone from the work directory: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''} (re-run the title without keeping done jobs)"
        )
    videos = []
    for name, paths in parts.items():
        joined = scratch / f"{name}.mp4"
        await concat_chunks(ctx.tools, paths, joined, expected_frames=plan.total_frames)
        videos.append(VideoInput(name, joined))
    audio = None
    if analysis.probe.has_audio:
        tracks = analysis.tracks
        audio = AudioInput(work.audio, language=tracks.audio_language, label=tracks.audio_label)
    subtitles = []
    if analysis.tracks.subtitles:
        source = await source_of(ctx, video_id)
        for track in analysis.tracks.subtitles:
            vtt = scratch / f"{track.language}.vtt"
            await extract_subtitle(ctx.tools, source, track, vtt)
            subtitles.append(SubtitleInput(vtt, track.language, track.label))
    return Inputs(videos, audio, subtitles)


def _new_staging(ctx: Context, video_id: str) -> Path:
    return ctx.storage.staging_dir(video_id).resolve()


def _missing(work: WorkDir, paths: Sequence[Path]) -> list[str]:
    return [work.relative(p) for p in paths if not p.is_file()]


def _read_renditions(staging: Path, analysis: Analysis, inputs: Inputs) -> list[Rendition]:
    """Blocking: reads the master and measures the audio playlist's segments."""
    audio_bandwidth = None
    if inputs.audio is not None:
        audio_bandwidth = measure_playlist(staging / inputs.audio.name / PLAYLIST)
    master = (staging / MASTER).read_text()
    return rendition_rows(master, analysis.rungs, inputs.audio, audio_bandwidth, inputs.subtitles)

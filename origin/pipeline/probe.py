"""Stage ``probe``: is the upload a video we can publish, and what is in it.

Runs :func:`origin.media.probe.inspect` (ffprobe, limits from ``[pipeline]``, a decode check
of its first frame and its last seconds) and lists its languages and subtitle tracks from the
same ffprobe run's JSON (:func:`origin.media.tracks.parse_tracks`). A file
that is not a usable video, or too short to hold one output frame (and with audio, one AAC
frame) once measured, fails the job permanently with the readable reason, so the video is
FAILED with it. The probe's facts go to the catalog (duration, displayed size) and, with the
tracks, into the ``analyse`` job.
"""

from __future__ import annotations

from origin.catalog import Job
from origin.config import PipelineConfig
from origin.media.chunks import check_length
from origin.media.probe import ProbeLimits, inspect_with_json
from origin.media.tracks import parse_tracks
from origin.pipeline.jobs import analyse_job, probe_to_json, tracks_to_json
from origin.pipeline.stage import Context, Done, source_of


def limits(cfg: PipelineConfig) -> ProbeLimits:
    return ProbeLimits(
        max_duration=cfg.max_duration_s,
        max_long_side=cfg.max_long_side,
        max_short_side=cfg.max_short_side,
    )


async def run(ctx: Context, job: Job) -> Done:
    source = await source_of(ctx, job.video_id)
    # ProbeRejected: permanent
    probe, data = await inspect_with_json(ctx.tools, source, limits(ctx.pipeline))
    check_length(probe)  # TooShort (a ProbeRejected): nothing to encode
    tracks = parse_tracks(data, probe.audio_index)
    width, height = probe.display_size
    await ctx.db(
        ctx.catalog.set_probe_result,
        job.video_id,
        duration_s=probe.duration,
        width=width,
        height=height,
    )
    return Done(
        result=probe_to_json(probe) | {"tracks": tracks_to_json(tracks)},
        then=(analyse_job(probe, tracks, ctx.pipeline.max_attempts),),
    )

"""Stages ``encode_chunk`` and ``encode_audio``: the parallel part of the pipeline.

Each job reads the plan from the analyse job its payload names, marks the video TRANSCODING
(once), encodes its piece into the title's work directory under a temporary name, and renames
it into place once the media layer has checked it (frame count and size of a chunk, length of
the audio). The job that completes the last of the title's encode jobs enqueues ``package``
(``when_all_done`` = the plan's fan-in kinds), in the same transaction.

Any worker may run any piece in any order; a piece redone after a lost lease overwrites a
whole file with a whole file of the same work.
"""

from __future__ import annotations

import asyncio

from origin.catalog import Job
from origin.media.chunks import encode_audio, encode_chunk
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import Analysis, PlanPayload, package_job
from origin.pipeline.stage import Context, Done, advance, load_analysis, source_of
from origin.pipeline.workdir import output


async def run_chunk(ctx: Context, job: Job) -> Done:
    payload = PlanPayload.from_json(job.payload)
    analysis = await load_analysis(ctx, payload.analysis_job)
    if payload.rung is None or payload.chunk is None:
        raise Rejected("an encode_chunk payload names a rung and a chunk")
    rung, chunk = analysis.rung(payload.rung), analysis.chunk(payload.chunk)
    await advance(ctx, job.video_id, "TRANSCODING")
    source = await source_of(ctx, job.video_id)
    work = ctx.work(job.video_id)
    final = work.chunk(rung.name, chunk.index)
    async with output(final) as tmp:
        check = await encode_chunk(
            ctx.tools,
            source,
            analysis.plan,
            chunk,
            rung,
            tmp,
            preset=ctx.pipeline.preset,
            threads=ctx.pipeline.encoder_threads,
        )
    size = await asyncio.to_thread(lambda: final.stat().st_size)
    return _done(ctx, payload, analysis, work.relative(final), frames=check.packets, bytes=size)


async def run_audio(ctx: Context, job: Job) -> Done:
    payload = PlanPayload.from_json(job.payload)
    analysis = await load_analysis(ctx, payload.analysis_job)
    await advance(ctx, job.video_id, "TRANSCODING")
    source = await source_of(ctx, job.video_id)
    work = ctx.work(job.video_id)
    async with output(work.audio) as tmp:
        check = await encode_audio(
            ctx.tools, source, analysis.probe, tmp, duration_limit=analysis.plan.duration
        )
    size = await asyncio.to_thread(lambda: work.audio.stat().st_size)
    return _done(
        ctx, payload, analysis, work.relative(work.audio), seconds=check.duration, bytes=size
    )


def _done(
    ctx: Context, payload: PlanPayload, analysis: Analysis, file: str, **facts: float
) -> Done:
    return Done(
        result={"file": file, **facts},
        then=(package_job(payload.analysis_job, ctx.pipeline.max_attempts),),
        when_all_done=analysis.fan_in,
    )

"""Stages ``encode_chunk`` and ``encode_audio``: the parallel part of the pipeline.

Each job reads the plan from the analyse job its payload names, marks the video TRANSCODING
(once), encodes its piece into the title's work directory under temporary names, and renames
them into place once the media layer has checked them (frame count and size of every chunk, the
length of the audio). The job that completes the last of the title's encode jobs enqueues
``package`` (``when_all_done`` = the plan's fan-in kinds), in the same transaction.

A chunk job encodes the rungs its payload names (``pipeline.rungs_per_job``) with ONE ffmpeg:
one decode of the chunk, one output per rung (:func:`~origin.media.chunks.encode_chunks`).
Its outputs are renamed only after every one of them passed its check, all in one go: a job
whose ffmpeg or any check fails leaves no final name of its own behind, and a job killed
between two renames leaves final names that each hold a whole, checked chunk (the redo
replaces them with whole files of the same work). Each rename stands alone for correctness
(the package job reads chunks only after this job is recorded done); renaming after all checks
only keeps a failed attempt's outputs out of the work directory.

Any worker may run any piece in any order; a piece redone after a lost lease overwrites whole
files with whole files of the same work.
"""

from __future__ import annotations

import asyncio
import contextlib

from origin.catalog import Job
from origin.media.chunks import encode_audio, encode_chunks
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import Analysis, JsonDict, PlanPayload, package_job
from origin.pipeline.stage import Context, Done, advance, load_analysis, video_source
from origin.pipeline.workdir import output


async def run_chunk(ctx: Context, job: Job) -> Done:
    payload = PlanPayload.from_json(job.payload)
    analysis = await load_analysis(ctx, payload.analysis_job)
    if not payload.rungs or payload.chunk is None:
        raise Rejected("an encode_chunk payload names its rungs and a chunk")
    rungs = [analysis.rung(name) for name in payload.rungs]
    chunk = analysis.chunk(payload.chunk)
    source = await video_source(await advance(ctx, job.video_id, "TRANSCODING"))
    work = ctx.work(job.video_id)
    finals = [work.chunk(rung.name, chunk.index) for rung in rungs]
    async with contextlib.AsyncExitStack() as outputs:
        # Every output's temporary name, renamed (in reverse order) when the block succeeds.
        temps = [await outputs.enter_async_context(output(final)) for final in finals]
        checks = await encode_chunks(
            ctx.tools,
            source,
            analysis.plan,
            chunk,
            list(zip(rungs, temps, strict=True)),
            preset=ctx.pipeline.preset,
            threads=ctx.pipeline.encoder_threads,
        )
    sizes = await asyncio.to_thread(lambda: [final.stat().st_size for final in finals])
    files: list[JsonDict] = [
        {"rung": rung.name, "file": work.relative(final), "frames": check.packets, "bytes": size}
        for rung, final, check, size in zip(rungs, finals, checks, sizes, strict=True)
    ]
    return _done(ctx, payload, analysis, {"files": files})


async def run_audio(ctx: Context, job: Job) -> Done:
    payload = PlanPayload.from_json(job.payload)
    analysis = await load_analysis(ctx, payload.analysis_job)
    source = await video_source(await advance(ctx, job.video_id, "TRANSCODING"))
    work = ctx.work(job.video_id)
    async with output(work.audio) as tmp:
        check = await encode_audio(
            ctx.tools, source, analysis.probe, tmp, duration_limit=analysis.plan.duration
        )
    size = await asyncio.to_thread(lambda: work.audio.stat().st_size)
    result = {"file": work.relative(work.audio), "seconds": check.duration, "bytes": size}
    return _done(ctx, payload, analysis, result)


def _done(ctx: Context, payload: PlanPayload, analysis: Analysis, result: JsonDict) -> Done:
    return Done(
        result=result,
        then=(package_job(payload.analysis_job, ctx.pipeline.max_attempts),),
        when_all_done=analysis.fan_in,
    )

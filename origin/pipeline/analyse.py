"""Stage ``analyse``: the title's plan, and the fan-out of its encode jobs.

Measures the source's complexity (a few quick constant-quality probe encodes), plans the
per-title ladder (no rung above the source) and the GOP-aligned chunks
(``pipeline.chunk_seconds``), marks the video SEGMENTED and enqueues one ``encode_chunk`` job
per chunk x group of ``pipeline.rungs_per_job`` rungs (0: all rungs of the chunk in one job) and
one ``encode_audio`` job, in the same transaction as its completion. The
plan is this job's result (:class:`~origin.pipeline.jobs.Analysis`); the encode jobs name it.
"""

from __future__ import annotations

from origin.catalog import Job
from origin.media.chunks import plan_chunks
from origin.media.complexity import measure_complexity
from origin.media.ladder import plan_ladder
from origin.pipeline.jobs import AnalysePayload, Analysis, encode_jobs
from origin.pipeline.stage import Context, Done, advance, source_of


async def run(ctx: Context, job: Job) -> Done:
    payload = AnalysePayload.from_json(job.payload)
    probe = payload.probe
    source = await source_of(ctx, job.video_id)
    complexity = await measure_complexity(
        ctx.tools, source, probe, threads=ctx.pipeline.encoder_threads
    )
    analysis = Analysis(
        probe=probe,
        tracks=payload.tracks,
        complexity=complexity,
        rungs=tuple(plan_ladder(*probe.display_size, complexity.kbps, av1=ctx.pipeline.av1)),
        plan=plan_chunks(probe, chunk_seconds=ctx.pipeline.chunk_seconds),
    )
    await advance(ctx, job.video_id, "SEGMENTED")
    return Done(
        result=analysis.to_json(),
        then=tuple(
            encode_jobs(job.job_id, analysis, ctx.pipeline.max_attempts, ctx.pipeline.rungs_per_job)
        ),
    )

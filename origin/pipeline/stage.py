"""What every stage is given and what it returns; the reads several stages share.

A stage is ``async def run(ctx: Context, job: Job) -> Done``. It does its work, writing only
under temporary names (:mod:`.workdir`), and returns what the worker records with
``Catalog.complete``: the result, the jobs to enqueue next (``then``, with ``when_all_done``
for a fan-in), and the outputs to remove if the completion is refused because the lease was
lost meanwhile (``undo``). It raises to fail the attempt (:mod:`.errors` says how that is
recorded). It never calls ``complete`` or ``fail`` itself and never swallows cancellation: the
worker cancels it when the lease is lost or at shutdown, and the media layer kills the tool.

The catalog is synchronous: stages reach it through :meth:`Context.db` (a worker thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from origin.catalog import Catalog, Job, JobSpec, Video, VideoStatus
from origin.config import PipelineConfig, WebhookConfig
from origin.media.tools import Tools
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import Analysis, JsonDict, parse
from origin.pipeline.webhook import Delivery
from origin.pipeline.workdir import WorkDir
from origin.storage import LocalStorage

P = ParamSpec("P")
R = TypeVar("R")

# The pipeline only moves a video forward; these may still become TRANSCODING.
_BEFORE_TRANSCODING: frozenset[VideoStatus] = frozenset({"PENDING", "SEGMENTED"})


@dataclass(frozen=True, slots=True)
class Done:
    """A finished stage, as the worker records it."""

    result: JsonDict
    then: tuple[JobSpec, ...] = ()
    when_all_done: tuple[str, ...] = ()
    undo: tuple[Path, ...] = ()
    """Directories this attempt made that nobody else will use if its completion is refused."""


@dataclass(frozen=True, slots=True)
class Context:
    pipeline: PipelineConfig
    webhook: WebhookConfig
    catalog: Catalog
    storage: LocalStorage
    tools: Tools
    on_webhook: Callable[[Delivery], None] = field(default=lambda _delivery: None)
    """Called with the outcome of every notification sent (the worker counts them)."""

    async def db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one catalog call in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def work(self, video_id: str) -> WorkDir:
        return WorkDir(self.pipeline.work_dir, video_id)


async def source_of(ctx: Context, video_id: str) -> Path:
    """The uploaded source of a video (relative paths are taken from the working directory,
    like every path of the config); ``Rejected`` if there is none."""
    return await video_source(await ctx.db(ctx.catalog.get_video, video_id))


async def video_source(video: Video) -> Path:
    """:func:`source_of` for a video row already read (encode jobs have it from
    :func:`advance`: one catalog read per job instead of two)."""
    if not video.source_path:
        raise Rejected("the video has no uploaded source")
    path = Path(video.source_path)
    if not await asyncio.to_thread(path.is_file):
        raise Rejected(f"the uploaded source is missing ({path.name})")
    return path


async def load_analysis(ctx: Context, analysis_job: int) -> Analysis:
    """The plan: the result of the title's analyse job."""
    job = await ctx.db(ctx.catalog.get_job, analysis_job)
    if job.state != "done" or job.result is None:
        raise Rejected(f"the analyse job {analysis_job} is {job.state}, not done")
    result = job.result
    return parse("analyse result", lambda: Analysis.from_json(result))


async def advance(ctx: Context, video_id: str, status: VideoStatus) -> Video:
    """Move the video forward to ``status`` unless it is there or beyond (one read, and one
    write only when it moves: thousands of encode jobs must not each bump ``updated_at``)."""
    video = await ctx.db(ctx.catalog.get_video, video_id)
    if video.status == "FAILED":
        raise Rejected(f"the video is FAILED: {video.failure_reason}")
    if video.status == status or not moves_forward(video.status, status):
        return video
    return await ctx.db(ctx.catalog.set_status, video_id, status)


def moves_forward(old: VideoStatus, new: VideoStatus) -> bool:
    """Whether the pipeline moves a video in ``old`` on to ``new`` (never back, never
    out of READY or FAILED)."""
    if new == "SEGMENTED":
        return old == "PENDING"
    if new == "TRANSCODING":
        return old in _BEFORE_TRANSCODING
    return False


Stage = Callable[[Context, Job], Coroutine[Any, Any, Done]]

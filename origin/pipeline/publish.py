"""Stage ``publish``: the staged title goes live and the video becomes READY, exactly once.

1. A video that is READY already was published by an earlier attempt that lost its lease
   before completing: only the clean-up and the completion are left.
2. ``storage.publish`` renames the staging directory to ``v/{video_id}`` in one step, never
   onto a title in place: a title in place was put there by an earlier or concurrent attempt
   (the same job redone after a lost lease, or released at a shutdown while its thread still
   ran), and its files are listed where they are. Publishing never removes a title; a stale
   ``v/{video_id}`` of a video that starts over is removed by what starts it over (the API's
   delete and re-run).
3. ``set_published`` records the renditions, the files (path, size, rendition) and READY in one
   transaction. A ``Conflict`` because another attempt made it READY meanwhile counts as done.
   A video deleted meanwhile (the delete found no title yet to remove) has its title taken away
   again, and the job ends without error: checked right after the rename in the same worker
   thread (which a cancellation does not stop) and again by ``set_published`` (``NotFound``).
4. The title's work directory and any staging directories that killed ``package`` attempts
   left behind are removed.
5. With a webhook configured, ``notify`` is enqueued with the completion.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from origin.catalog import Catalog, Conflict, Job, NotFound, PublishedFile, Rendition, Video
from origin.media.package import SUBS_DIR
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import PublishPayload, notify_job
from origin.pipeline.package import subtitle_rendition
from origin.pipeline.stage import Context, Done
from origin.pipeline.workdir import remove_pipeline_files
from origin.storage import LocalStorage, StoredFile

log = logging.getLogger("origin.pipeline.publish")


def rendition_of(key: str, video_id: str, renditions: Iterable[Rendition]) -> str | None:
    """The rendition a published file belongs to: its directory's, or for ``subs/`` the
    subtitle language's; None for the manifests and thumbnails."""
    rel = key.removeprefix(f"/v/{video_id}/")
    top, sep, name = rel.partition("/")
    if not sep:
        return None
    subtitle_languages = []
    for r in renditions:
        if r.name == top and r.kind != "subtitle":
            return r.name
        if r.kind == "subtitle" and r.name.startswith(f"{SUBS_DIR}-"):
            subtitle_languages.append(r.name.removeprefix(f"{SUBS_DIR}-"))
    if top != SUBS_DIR:
        return None
    # Longest first: "pt-br-00001.vtt" belongs to pt-br, not to a pt track.
    for language in sorted(subtitle_languages, key=len, reverse=True):
        lang = re.escape(language)
        if re.fullmatch(rf"{lang}\.(m3u8|vtt)|{lang}-\d+\.vtt", name):
            return subtitle_rendition(language)
    return None


def published_files(
    stored: Sequence[StoredFile], video_id: str, renditions: Sequence[Rendition]
) -> list[PublishedFile]:
    return [PublishedFile(f.key, f.size, rendition_of(f.key, video_id, renditions)) for f in stored]


async def run(ctx: Context, job: Job) -> Done:
    payload = PublishPayload.from_json(job.payload)
    video = await ctx.db(ctx.catalog.get_video, job.video_id)
    already = video.status == "READY"
    stored: list[StoredFile] = []
    if not already:
        if video.status == "FAILED":
            raise Rejected(f"the video is FAILED: {video.failure_reason}")
        try:
            stored = await _put_in_place(ctx, job.video_id, payload.staging)
            files = published_files(stored, job.video_id, payload.renditions)
            video, already = await _record(ctx, job.video_id, payload.renditions, files)
        except NotFound:
            return await _deleted_meanwhile(ctx, job.video_id)
    await _clean_up(ctx, job.video_id)
    then = (notify_job(video, ctx.pipeline.max_attempts),) if ctx.webhook.url else ()
    return Done(
        result={"files": len(stored), "bytes": sum(f.size for f in stored), "already": already},
        then=then,
    )


async def _put_in_place(ctx: Context, video_id: str, staging: Path) -> list[StoredFile]:
    try:
        stored = await asyncio.to_thread(_place, ctx.storage, ctx.catalog, video_id, staging)
    except FileNotFoundError:
        stored = []
    if not stored:
        raise Rejected(
            f"the staged title {staging.name} is gone and nothing is published "
            "(re-run the title without keeping done jobs)"
        )
    return stored


def _place(
    storage: LocalStorage, catalog: Catalog, video_id: str, staging: Path
) -> list[StoredFile]:
    """The rename, then whether the video is still there, in one worker-thread hop (blocking).

    A delete between this attempt's read of the video and its rename found no title to remove;
    the delete also removed the video's jobs, so the lease keeper cancels this attempt, but a
    cancellation does not stop a thread: the title it placed is taken away again here
    (``NotFound``). A delete after the check finds the title in place and removes it itself.
    """
    stored = storage.publish_blocking(video_id, staging)
    try:
        catalog.get_video(video_id)
    except NotFound:
        storage.remove_video_blocking(video_id)
        raise
    return stored


async def _record(
    ctx: Context, video_id: str, renditions: Sequence[Rendition], files: Sequence[PublishedFile]
) -> tuple[Video, bool]:
    """READY with its renditions and files; ``(video, True)`` if another attempt won."""
    try:
        return await ctx.db(ctx.catalog.set_published, video_id, renditions, files), False
    except Conflict:
        video = await ctx.db(ctx.catalog.get_video, video_id)
        if video.status != "READY":
            raise
        return video, True


async def _deleted_meanwhile(ctx: Context, video_id: str) -> Done:
    """The video was deleted after this attempt read it: take away what it placed."""
    removed = await ctx.storage.remove_video(video_id)
    await _clean_up(ctx, video_id)
    log.info("video deleted while publishing", extra={"video_id": video_id, "removed": removed})
    return Done(result={"files": 0, "bytes": 0, "already": False, "deleted": True})


async def _clean_up(ctx: Context, video_id: str) -> None:
    """Once the title is published (or deleted) no attempt may still use a staging directory:
    any worker that still writes there lost its lease."""
    await remove_pipeline_files(ctx.storage, ctx.pipeline.work_dir, video_id)

"""Stage ``publish``: the staged title goes live and the video becomes READY, exactly once.

1. A video that is READY already was published by an earlier attempt that lost its lease
   before completing: only the clean-up and the completion are left.
2. ``storage.publish`` renames the staging directory to ``v/{video_id}`` in one step. If the
   staging directory is gone, an earlier attempt renamed it and died before recording it: the
   title's files are listed where they are.
3. ``set_published`` records the renditions, the files (path, size, rendition) and READY in one
   transaction. A ``Conflict`` because another attempt made it READY meanwhile counts as done.
4. The title's work directory and any staging directories that killed ``package`` attempts
   left behind are removed.
5. With a webhook configured, ``notify`` is enqueued with the completion.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from origin.catalog import Conflict, Job, PublishedFile, Rendition, Video
from origin.media.package import SUBS_DIR
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import PublishPayload, notify_job
from origin.pipeline.package import subtitle_rendition
from origin.pipeline.stage import Context, Done
from origin.pipeline.workdir import remove_tree
from origin.storage import STAGING, LocalStorage, StoredFile, list_files


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


def title_files(storage: LocalStorage, video_id: str) -> list[StoredFile]:
    """The files of a published title, as ``storage.publish`` returned them (blocking)."""
    return list_files(storage.root / "v" / video_id, video_id)


def sweep_staging(storage: LocalStorage, video_id: str) -> None:
    """Remove what killed attempts left of this title in the staging area (blocking).

    Staging directories are named ``{video_id}.…`` (ids hold no dot). Once the title is
    published no attempt may still use one: any worker that still writes there lost its lease.
    """
    base = storage.root / STAGING
    for path in base.glob(f"{video_id}.*"):
        shutil.rmtree(path, ignore_errors=True)


async def run(ctx: Context, job: Job) -> Done:
    payload = PublishPayload.from_json(job.payload)
    video = await ctx.db(ctx.catalog.get_video, job.video_id)
    already = video.status == "READY"
    stored: list[StoredFile] = []
    if not already:
        if video.status == "FAILED":
            raise Rejected(f"the video is FAILED: {video.failure_reason}")
        stored = await _put_in_place(ctx, job.video_id, payload.staging)
        files = published_files(stored, job.video_id, payload.renditions)
        video, already = await _record(ctx, job.video_id, payload.renditions, files)
    await remove_tree(ctx.work(job.video_id).root)
    await asyncio.to_thread(sweep_staging, ctx.storage, job.video_id)
    then = (notify_job(video, ctx.pipeline.max_attempts),) if ctx.webhook.url else ()
    return Done(
        result={"files": len(stored), "bytes": sum(f.size for f in stored), "already": already},
        then=then,
    )


async def _put_in_place(ctx: Context, video_id: str, staging: Path) -> list[StoredFile]:
    if await asyncio.to_thread(staging.is_dir):
        return await ctx.storage.publish(video_id, staging)
    stored = await asyncio.to_thread(title_files, ctx.storage, video_id)
    if not stored:
        raise Rejected(
            f"the staged title {staging.name} is gone and nothing is published "
            "(re-run the title without keeping done jobs)"
        )
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

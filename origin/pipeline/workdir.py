"""A title's intermediate files under ``pipeline.work_dir`` and how they are written.

Layout (shared by the workers of one machine; keep it on the file system of ``media.root``)::

    {work_dir}/{video_id}/chunks/{rung}/00003.mp4   encode_chunk outputs
    {work_dir}/{video_id}/audio.mp4                 the encode_audio output
    {work_dir}/{video_id}/package-{token}/          one package attempt's joined rungs and
                                                    WebVTT files; removed when it ends

Writing: every output goes to a temporary name in its final directory
(``.00003.{token}.tmp.mp4``: the suffix stays, ffmpeg picks its muxer by it) and is renamed
into place only once it is complete and checked (:func:`output`). A final name therefore only
ever holds a whole, checked file: a worker killed mid-write leaves a temporary file, and a job
redone by another worker after a lost lease replaces one whole file by another of the same
work. Temporary names carry a random token, so two workers never write the same file.

The publish stage removes ``{work_dir}/{video_id}/`` (temporary leftovers of killed workers
included) once the title is READY. A FAILED title's files stay for an operator's re-run
(``Catalog.rerun(keep_done=True)`` reuses its finished chunks; the API's re-run clears them)
until ``serve``'s janitor removes them after ``pipeline.failed_work_expiry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from origin.storage import MediaWriter


def new_token() -> str:
    """A random name part for one attempt's temporary files."""
    return secrets.token_hex(4)


def temp_path(final: Path, token: str) -> Path:
    """Where ``final`` is written before it is renamed into place."""
    return final.with_name(f".{final.stem}.{token}.tmp{final.suffix}")


@dataclass(frozen=True, slots=True)
class WorkDir:
    """The paths of one title's intermediate files (pure; nothing is created here)."""

    work_dir: Path
    video_id: str

    @property
    def root(self) -> Path:
        return self.work_dir / self.video_id

    def chunk(self, rung: str, index: int) -> Path:
        return self.root / "chunks" / rung / f"{index:05d}.mp4"

    @property
    def audio(self) -> Path:
        return self.root / "audio.mp4"

    def attempt(self, token: str) -> Path:
        """A directory of one attempt's own scratch files."""
        return self.root / f"package-{token}"

    def relative(self, path: Path) -> str:
        """``path`` as recorded in a job result: relative to the title's work directory."""
        return path.relative_to(self.root).as_posix()


@contextlib.asynccontextmanager
async def output(final: Path) -> AsyncIterator[Path]:
    """Yield a temporary path for ``final``; rename it into place if the block succeeds,
    remove it if the block raises or is cancelled."""
    tmp = temp_path(final, new_token())
    await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
    try:
        yield tmp
        await asyncio.to_thread(os.replace, tmp, final)
    except BaseException:
        # One unlink, on the failure path only: not worth a thread hop that a cancellation
        # in progress could interrupt.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


async def remove_tree(path: Path) -> None:
    """Remove a directory and everything below it, if it exists."""
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


async def remove_pipeline_files(storage: MediaWriter, work_dir: Path, video_id: str) -> None:
    """What the pipeline built for a video outside its published title: its work directory
    and the staging directories of its publish attempts (after a publish, a delete, a re-run)."""
    await remove_tree(WorkDir(work_dir, video_id).root)
    await storage.remove_staging(video_id)

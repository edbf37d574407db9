"""The janitor's driver: every ``api.janitor_interval_s`` one run that surveys (catalog and
directories, one thread hop), lets :func:`origin.janitor.policy.plan` decide, and removes what
it chose (one more thread hop), so the event loop never waits on SQLite or the disk.

A run never raises into ``serve``: an error of the survey ends that run, an error removing one
item skips that item; both are logged and counted (``vodedge_origin_janitor_errors_total``) and
the next run tries again. Cancellation (shutdown) propagates at once; a thread hop in progress
finishes on its own (it holds no lock ``serve`` needs to stop).

Races it leaves no room for:

- An upload that receives bytes between the survey and the removal is not aborted:
  ``abort_upload(idle_before=…)`` checks, in its transaction, that it is still open and idle.
- A FAILED video re-run meanwhile keeps its work directory: the statuses are read again just
  before the removal (the re-run clears the directory itself anyway, and its first steps write
  nothing there).
- A staging directory is removed only by the path surveyed, never by pattern, so one a new
  attempt creates meanwhile is not touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from origin.catalog import Catalog, CatalogError, Conflict, NotFound, Video
from origin.config import OriginConfig
from origin.janitor.policy import (
    Ages,
    OpenUpload,
    Plan,
    StagingCandidate,
    VideoState,
    WorkDirCandidate,
    plan,
    staging_owner,
    upload_cutoff,
    work_dir_expired,
)
from origin.metrics.janitor import JanitorMetrics
from origin.pipeline.workdir import WorkDir
from origin.storage import STAGING
from vodedge.paths import VIDEO_ID_RE

log = logging.getLogger("origin.janitor")

BATCH = 1000
"""Stale uploads taken per run; more wait for the next run."""


@dataclass(frozen=True, slots=True)
class JanitorSettings:
    """What the janitor takes from the configuration."""

    interval_s: float
    ages: Ages
    work_dir: Path
    """``pipeline.work_dir``: holds ``{video_id}/`` per title."""
    media_root: Path
    """``media.root``: holds the staging area ``.staging/``."""

    @classmethod
    def from_config(cls, cfg: OriginConfig) -> JanitorSettings:
        return cls(
            interval_s=cfg.api.janitor_interval_s,
            ages=Ages(
                upload_expiry_s=cfg.api.upload_expiry_s,
                failed_work_expiry_s=cfg.pipeline.failed_work_expiry_s,
            ),
            work_dir=cfg.pipeline.work_dir.absolute(),
            media_root=cfg.media.root.absolute(),
        )


@dataclass(frozen=True, slots=True)
class Survey:
    """The candidates of one run, as found."""

    uploads: tuple[OpenUpload, ...] = ()
    work_dirs: tuple[WorkDirCandidate, ...] = ()
    staging: tuple[StagingCandidate, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run removed, and how many removals failed, per kind."""

    uploads: int = 0
    work_dirs: int = 0
    staging_dirs: int = 0
    upload_errors: int = 0
    work_dir_errors: int = 0
    staging_dir_errors: int = 0


class Janitor:
    """Removes stale uploads, old FAILED videos' work directories and leftover staging
    directories (:mod:`origin.janitor.policy` says which); ``now`` is injected for tests."""

    def __init__(
        self,
        catalog: Catalog,
        settings: JanitorSettings,
        metrics: JanitorMetrics,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self._now = now

    async def run(self) -> None:
        """Run every ``interval_s`` (the first after one interval) until cancelled."""
        while True:
            await asyncio.sleep(self._settings.interval_s)
            await self.run_once()

    async def run_once(self) -> Outcome | None:
        """One run; None if the survey failed (logged and counted)."""
        started = time.perf_counter()
        now = self._now()
        try:
            survey = await asyncio.to_thread(self._survey, now)
            todo = plan(
                now,
                self._settings.ages,
                uploads=survey.uploads,
                work_dirs=survey.work_dirs,
                staging=survey.staging,
            )
            outcome = await asyncio.to_thread(self._remove, now, todo) if todo else Outcome()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._metrics.error("survey")
            log.exception("janitor run failed; the next run tries again")
            return None
        finally:
            self._metrics.run(time.perf_counter() - started)
        self._record(outcome)
        return outcome

    def _record(self, o: Outcome) -> None:
        m = self._metrics
        m.removed_items("upload", o.uploads)
        m.removed_items("work_dir", o.work_dirs)
        m.removed_items("staging_dir", o.staging_dirs)
        m.error("upload", o.upload_errors)
        m.error("work_dir", o.work_dir_errors)
        m.error("staging_dir", o.staging_dir_errors)
        if o.uploads or o.work_dirs or o.staging_dirs:
            log.info(
                "janitor removed stale files",
                extra={
                    "uploads": o.uploads,
                    "work_dirs": o.work_dirs,
                    "staging_dirs": o.staging_dirs,
                },
            )

    # -- blocking: run in a worker thread ----------------------------------------------------

    def _survey(self, now: float) -> Survey:
        s = self._settings
        stale = self._catalog.stale_uploads(upload_cutoff(now, s.ages), limit=BATCH)
        work = [(name, mtime) for name, mtime in _subdirs(s.work_dir) if VIDEO_ID_RE.match(name)]
        staging = [
            (s.media_root / STAGING / name, mtime, staging_owner(name))
            for name, mtime in _subdirs(s.media_root / STAGING)
        ]
        ids = [name for name, _ in work] + [vid for _, _, vid in staging if vid is not None]
        videos = _states(self._catalog.find_videos(ids)) if ids else {}
        return Survey(
            uploads=tuple(OpenUpload(u.upload_id, u.updated_at, Path(u.temp_path)) for u in stale),
            work_dirs=tuple(WorkDirCandidate(name, videos.get(name)) for name, _ in work),
            staging=tuple(
                StagingCandidate(path, mtime, vid, None if vid is None else videos.get(vid))
                for path, mtime, vid in staging
            ),
        )

    def _remove(self, now: float, todo: Plan) -> Outcome:
        uploads, upload_errors = self._remove_uploads(now, todo.uploads)
        work_dirs, work_dir_errors = self._remove_work_dirs(now, todo.work_dirs)
        staging_dirs = staging_dir_errors = 0
        for path in todo.staging_dirs:
            removed = _remove_tree(path, "staging_dir")
            staging_dirs += removed is True
            staging_dir_errors += removed is None
        return Outcome(
            uploads, work_dirs, staging_dirs, upload_errors, work_dir_errors, staging_dir_errors
        )

    def _remove_uploads(self, now: float, uploads: tuple[OpenUpload, ...]) -> tuple[int, int]:
        removed = errors = 0
        cutoff = upload_cutoff(now, self._settings.ages)
        for u in uploads:
            fields = {"upload_id": u.upload_id}
            try:
                self._catalog.abort_upload(u.upload_id, idle_before=cutoff)
            except (Conflict, NotFound):
                continue  # written to, completed or aborted meanwhile: not stale any more
            except CatalogError as e:
                errors += 1
                log.error("janitor cannot abort an upload", extra=fields | {"error": str(e)})
                continue
            try:
                u.temp_path.unlink(missing_ok=True)
            except OSError as e:
                errors += 1
                log.error(
                    "janitor cannot remove an aborted upload's file",
                    extra=fields | {"path": str(u.temp_path), "error": str(e)},
                )
                continue
            removed += 1
            log.info("stale upload aborted", extra=fields)
        return removed, errors

    def _remove_work_dirs(self, now: float, video_ids: tuple[str, ...]) -> tuple[int, int]:
        if not video_ids:
            return 0, 0
        try:
            videos = _states(self._catalog.find_videos(video_ids))  # again: a re-run meanwhile?
        except CatalogError as e:
            log.error("janitor cannot read the videos again", extra={"error": str(e)})
            return 0, len(video_ids)
        removed = errors = 0
        for video_id in video_ids:
            if not work_dir_expired(now, self._settings.ages, videos.get(video_id)):
                continue
            result = _remove_tree(WorkDir(self._settings.work_dir, video_id).root, "work_dir")
            removed += result is True
            errors += result is None
        return removed, errors


def _states(videos: dict[str, Video]) -> dict[str, VideoState]:
    return {
        vid: VideoState(v.status, v.updated_at, deleted=v.deleted_at is not None)
        for vid, v in videos.items()
    }


def _subdirs(directory: Path) -> Iterator[tuple[str, float]]:
    """(name, mtime) of the real directories (not symlinks) in ``directory``; none if it is
    absent."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        if stat.S_ISDIR(st.st_mode):
            yield entry.name, st.st_mtime


def _remove_tree(path: Path, what: str) -> bool | None:
    """Remove ``path`` and below: True if removed, False if it was gone, None on an error
    (logged)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        log.error(
            "janitor cannot remove a directory",
            extra={"what": what, "path": str(path), "error": str(e)},
        )
        return None
    log.info("stale directory removed", extra={"what": what, "path": str(path)})
    return True

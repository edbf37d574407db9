"""The origin's catalog and job queue: the :class:`Catalog` interface, SQLite behind it.

One database holds what the origin knows: videos and their status, what each published
(renditions and files), resumable uploads, and the jobs of the encode pipeline. The interface is
synchronous and small so that a PostgreSQL implementation can replace :class:`SqliteCatalog`
for a multi-node deployment; async callers run it in a worker thread (``asyncio.to_thread``).

Connections: one :class:`SqliteCatalog` owns one connection, used by one thread at a time
(a lock serialises callers, so worker threads of an event loop may share it); every process
opens its own. SQLite runs in WAL mode, so readers never block the single writer;
``synchronous=NORMAL`` (a power cut may lose the last commits, never corrupt the file),
foreign keys on, and a busy timeout so that writers queue for the lock instead of failing.
Every write runs in ``BEGIN IMMEDIATE``: the write lock is taken before the first read, so a
read-then-write transaction never fails half-way on a lock upgrade.

The job queue (leases, retries, what a lost lease means) is :mod:`origin.catalog.jobs`; here
each of its steps runs in its own write transaction.

Orchestration is stage by stage, not by a dependency graph: the worker that finishes a job
enqueues what follows in the same transaction as the completion
(``complete(..., then=[...])``). For the fan-in after a parallel stage, ``when_all_done=
["encode_chunk", "encode_audio"]`` enqueues ``then`` only when that completion finished the
last of those jobs; two workers finishing together both enqueue the same keys, which is
harmless. No crash can fall between a completion and its follow-up, so no video is left
waiting; and since every enqueue is idempotent, a supervisor may still re-derive and re-enqueue
the next stage of any video at any time. ``counts`` and ``all_done`` serve progress reports.

Clock: ``now`` is injected (seconds since the epoch) so tests expire leases without sleeping.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from origin.catalog import fts
from origin.catalog import jobs as queue
from origin.catalog.errors import CatalogError, Conflict, Invalid, NotFound, from_sqlite
from origin.catalog.models import (
    MAX_DESCRIPTION,
    MAX_TITLE,
    CatalogStats,
    Job,
    JobCounts,
    JobSpec,
    PublishedFile,
    Rendition,
    RetryPolicy,
    SearchHit,
    Upload,
    Video,
    VideoDetail,
    VideoPage,
    VideoStatus,
    check_positive,
    check_sha256,
    check_specs,
    check_status,
    check_tags,
    check_text,
    check_video_id,
    clip_error,
    decode_cursor,
    encode_cursor,
    may_set_status,
    new_id,
)
from origin.catalog.rows import (
    FILE_COLUMNS,
    RENDITION_COLUMNS,
    UPLOAD_COLUMNS,
    VIDEO_COLUMNS,
    columns,
    dump_json,
    file_from,
    rendition_from,
    upload_from,
    video_from,
)
from origin.catalog.schema import migrate

DEFAULT_BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for the database lock before :class:`CatalogError`."""

DEFAULT_LEASE_S = 60.0
"""Lease of a claimed job; workers extend it well before it runs out (every lease/3)."""

MAX_PAGE = 1000

VIDEOS = columns(VIDEO_COLUMNS)
UPLOADS = columns(UPLOAD_COLUMNS)


class Catalog(Protocol):
    """What the origin's API, CLI and workers need from the catalog database."""

    # -- videos ------------------------------------------------------------------------------

    def create_video(
        self,
        title: str,
        *,
        description: str = "",
        tags: Iterable[str] = (),
        source_path: str | None = None,
        video_id: str | None = None,
    ) -> Video:
        """A new PENDING video; a random 11-character id unless ``video_id`` is given
        (``Conflict`` if taken)."""
        ...

    def get_video(self, video_id: str, *, include_deleted: bool = False) -> Video:
        """The video, or ``NotFound`` (also for a soft-deleted one unless asked for)."""
        ...

    def video_detail(self, video_id: str) -> VideoDetail:
        """The video with its renditions and published files, from one snapshot."""
        ...

    def list_videos(
        self,
        *,
        status: VideoStatus | None = None,
        updated_since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> VideoPage:
        """Videos in ``(updated_at, video_id)`` order, ``updated_at >= updated_since``.

        The order suits the control plane's incremental sync: a row updated while it pages
        moves to the end and is seen again, never skipped. ``include_deleted`` returns the
        tombstones of soft-deleted videos so that a sync learns of deletions.
        """
        ...

    def update_video(
        self,
        video_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Video:
        """Change the descriptive fields given (the search index follows)."""
        ...

    def set_status(self, video_id: str, status: VideoStatus, reason: str | None = None) -> Video:
        """Move the video along the pipeline (:func:`models.may_set_status`, else ``Conflict``);
        ``reason`` is kept for FAILED. READY is only reached by :meth:`set_published`."""
        ...

    def set_probe_result(
        self, video_id: str, *, duration_s: float, width: int, height: int
    ) -> Video:
        """Record what probing the source found."""
        ...

    def set_published(
        self, video_id: str, renditions: Sequence[Rendition], files: Sequence[PublishedFile]
    ) -> Video:
        """Record renditions and files and make the video READY, all in one transaction: a
        reader sees either none of it or all of it. ``Conflict`` if READY or FAILED already."""
        ...

    def search(
        self, query: str, *, limit: int = 20, status: VideoStatus | None = None
    ) -> list[SearchHit]:
        """Videos whose title, description or tags hold every word of ``query``, best first
        (:mod:`origin.catalog.fts`). Any text is safe; one without words finds nothing."""
        ...

    def increment_views(self, video_id: str, n: int = 1) -> int:
        """Add ``n`` views and return the new count; ``updated_at`` is left alone so that
        views do not make a title look changed to the sync."""
        ...

    def delete_video(self, video_id: str, *, hard: bool = False) -> tuple[PublishedFile, ...]:
        """Remove the video's renditions, files and jobs; keep a tombstone row (``deleted_at``)
        unless ``hard``. Returns the files that were published, for the caller to remove from
        media storage and purge from the fleet."""
        ...

    def rerun(
        self, video_id: str, *, jobs: Sequence[JobSpec] = (), keep_done: bool = False
    ) -> Video:
        """Operator re-run of a FAILED video: back to PENDING with its jobs dropped (or, with
        ``keep_done``, its unfinished jobs reset to fresh attempts) and ``jobs`` enqueued."""
        ...

    def find_videos(self, video_ids: Sequence[str]) -> dict[str, Video]:
        """The videos among ``video_ids`` that the catalog holds, deleted ones (tombstones)
        included; ids it does not know are left out."""
        ...

    # -- uploads -----------------------------------------------------------------------------

    def create_upload(
        self,
        size: int,
        *,
        title: str,
        temp_path: str,
        description: str = "",
        tags: Iterable[str] = (),
        sha256: str | None = None,
        upload_id: str | None = None,
    ) -> Upload:
        """An open upload of ``size`` bytes to be written at ``temp_path``."""
        ...

    def get_upload(self, upload_id: str) -> Upload: ...

    def add_upload_bytes(self, upload_id: str, offset: int, length: int) -> Upload:
        """Record that ``length`` bytes were written at ``offset``, which must be the bytes
        received so far (``Conflict`` otherwise: the client resumes from ``received``)."""
        ...

    def complete_upload(
        self,
        upload_id: str,
        *,
        sha256: str,
        source_path: str,
        jobs: Sequence[JobSpec] = (),
        video_id: str | None = None,
    ) -> Video:
        """Close a fully received upload: create its PENDING video and enqueue ``jobs``, in one
        transaction. A checksum that differs from the declared one aborts the upload
        (``Conflict``). Completing a completed upload returns its video (retried requests)."""
        ...

    def abort_upload(self, upload_id: str, *, idle_before: float | None = None) -> Upload:
        """Close an upload that is not complete. With ``idle_before`` (the janitor), only an
        open upload last updated before then: one that received bytes meanwhile, or that was
        completed, is a ``Conflict``."""
        ...

    def stale_uploads(self, before: float, *, limit: int = MAX_PAGE) -> list[Upload]:
        """Open uploads last updated before ``before``, oldest first (the janitor)."""
        ...

    # -- jobs --------------------------------------------------------------------------------

    def enqueue(self, video_id: str, spec: JobSpec) -> Job: ...

    def enqueue_many(self, video_id: str, specs: Sequence[JobSpec]) -> list[Job]:
        """Enqueue in one transaction; existing keys return the existing jobs."""
        ...

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Job | None:
        """Lease the oldest claimable job of one of ``kinds`` (any if None) to ``worker_id``."""
        ...

    def extend(self, job_id: int, worker_id: str, lease_s: float) -> bool:
        """Make a held lease run until ``now + lease_s``; False if the lease is lost."""
        ...

    def release(self, job_id: int, worker_id: str) -> bool:
        """Give a held job back to the queue without spending its attempt (a worker stopping
        on purpose); False if the lease is lost."""
        ...

    def complete(
        self,
        job_id: int,
        worker_id: str,
        result: object = None,
        *,
        then: Sequence[JobSpec] = (),
        when_all_done: Sequence[str] = (),
    ) -> bool:
        """Mark a held job done with ``result`` (JSON) and enqueue ``then`` for its video, in
        one transaction; False (and nothing written) if the lease is lost.

        With ``when_all_done``, ``then`` is enqueued only if every job of those kinds of the
        video is done after this completion: the fan-in of a parallel stage (the last encode
        chunk enqueues packaging) without a moment where a crash could leave it unenqueued."""
        ...

    def fail(
        self, job_id: int, worker_id: str, error: str, *, permanent: bool = False
    ) -> Job | None:
        """Record a failed attempt of a held job: requeued after back-off, or failed for good
        (with its video) when attempts are used up or ``permanent``. None if the lease is lost."""
        ...

    def get_job(self, job_id: int) -> Job: ...

    def list_jobs(self, video_id: str) -> list[Job]:
        """The video's jobs in enqueue order, with their error logs (the job status API)."""
        ...

    def counts(self, video_id: str) -> dict[str, JobCounts]:
        """Jobs per kind and state, for progress (``JobCounts.sum`` for the whole video)."""
        ...

    def all_done(self, video_id: str, kind: str) -> bool:
        """Whether the video has jobs of ``kind`` and all of them are done."""
        ...

    def pending_jobs(self, kinds: Sequence[str] | None = None) -> int:
        """Jobs of ``kinds`` (any if None) queued, due or not, or leased, of every video but
        FAILED or deleted ones, whose jobs are never handed out: zero means nothing is left."""
        ...

    def stats(self) -> CatalogStats:
        """Job backlog and videos by status, from one snapshot (for ``/metrics``; cheap: it
        reads the unfinished jobs and one index of the videos)."""
        ...

    def close(self) -> None: ...


class SqliteCatalog:
    """:class:`Catalog` in one SQLite file; see the module docstring for connection rules."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        now: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Wrap an open, migrated connection (use :meth:`open`)."""
        self._conn: sqlite3.Connection | None = conn
        self._now = now
        self._retry = retry or RetryPolicy()
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        now: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> SqliteCatalog:
        """Open (creating it and its directory if needed) and migrate the database at ``path``."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise CatalogError(f"cannot open catalog {path}: {e}") from e
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000):d}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CatalogError(f"catalog {path}: cannot use WAL (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException as e:
            conn.close()
            if isinstance(e, sqlite3.Error):
                raise from_sqlite(e) from e
            raise
        return cls(conn, now=now, retry=retry)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteCatalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` for writes, a snapshot for reads; sqlite3
        errors leave as :class:`CatalogError` subclasses."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise CatalogError("catalog is closed")
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise from_sqlite(e) from e
                raise

    # -- videos ------------------------------------------------------------------------------

    def create_video(
        self,
        title: str,
        *,
        description: str = "",
        tags: Iterable[str] = (),
        source_path: str | None = None,
        video_id: str | None = None,
    ) -> Video:
        values = _video_values(title, description, tags)
        with self._tx() as c:
            return self._insert_video(c, video_id, values, source_path)

    def get_video(self, video_id: str, *, include_deleted: bool = False) -> Video:
        with self._tx(write=False) as c:
            return _load_video(c, video_id, include_deleted=include_deleted)

    def video_detail(self, video_id: str) -> VideoDetail:
        with self._tx(write=False) as c:
            video = _load_video(c, video_id)
            renditions = c.execute(
                f"SELECT {columns(RENDITION_COLUMNS)} FROM renditions WHERE video_id = ? "
                "ORDER BY kind DESC, height DESC, bitrate_bps DESC, name",
                (video_id,),
            ).fetchall()
            return VideoDetail(
                video=video,
                renditions=tuple(rendition_from(r) for r in renditions),
                files=_files(c, video_id),
            )

    def list_videos(
        self,
        *,
        status: VideoStatus | None = None,
        updated_since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> VideoPage:
        _check_limit(limit, MAX_PAGE)
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(check_status(status))
        if updated_since is not None:
            where.append("updated_at >= ?")
            params.append(float(updated_since))
        if cursor is not None:
            where.append("(updated_at, video_id) > (?, ?)")
            params.extend(decode_cursor(cursor))
        if not include_deleted:
            where.append("deleted_at IS NULL")
        sql = f"SELECT {VIDEOS} FROM videos"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at, video_id LIMIT ?"
        with self._tx(write=False) as c:
            rows = c.execute(sql, (*params, limit + 1)).fetchall()
        videos = tuple(video_from(r) for r in rows[:limit])
        more = len(rows) > limit
        last = videos[-1] if videos else None
        next_cursor = encode_cursor(last.updated_at, last.video_id) if more and last else None
        return VideoPage(videos=videos, next_cursor=next_cursor)

    def update_video(
        self,
        video_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Video:
        sets: list[str] = []
        params: list[object] = []
        if title is not None:
            sets.append("title = ?")
            params.append(check_text("title", title, MAX_TITLE, empty_ok=False))
        if description is not None:
            sets.append("description = ?")
            params.append(check_text("description", description, MAX_DESCRIPTION, empty_ok=True))
        if tags is not None:
            sets.append("tags = ?")
            params.append(dump_json(list(check_tags(tags))))
        with self._tx() as c:
            if not sets:
                return _load_video(c, video_id)
            return self._update_video(c, video_id, ", ".join(sets), params)

    def set_status(self, video_id: str, status: VideoStatus, reason: str | None = None) -> Video:
        new = check_status(status)
        if new == "READY":
            raise Invalid("a video becomes READY by set_published, with its files")
        with self._tx() as c:
            old = _load_video(c, video_id)
            if not may_set_status(old.status, new):
                raise Conflict(f"video {video_id} is {old.status}; it cannot become {new}")
            failure = (reason or old.failure_reason) if new == "FAILED" else None
            return self._update_video(
                c, video_id, "status = ?, failure_reason = ?", (new, clip_error(failure))
            )

    def set_probe_result(
        self, video_id: str, *, duration_s: float, width: int, height: int
    ) -> Video:
        check_positive("duration_s", duration_s)
        check_positive("width", width)
        check_positive("height", height)
        with self._tx() as c:
            return self._update_video(
                c,
                video_id,
                "duration_s = ?, width = ?, height = ?",
                (float(duration_s), width, height),
            )

    def set_published(
        self, video_id: str, renditions: Sequence[Rendition], files: Sequence[PublishedFile]
    ) -> Video:
        if not files:
            raise Invalid("a published video has files")
        for rendition in renditions:
            rendition.check()
        for file in files:
            file.check(video_id)
        with self._tx() as c:
            video = _load_video(c, video_id)
            if video.status in ("READY", "FAILED"):
                raise Conflict(f"video {video_id} is {video.status}; it cannot be published")
            c.execute("DELETE FROM published_files WHERE video_id = ?", (video_id,))
            c.execute("DELETE FROM renditions WHERE video_id = ?", (video_id,))
            c.executemany(
                f"INSERT INTO renditions (video_id, {columns(RENDITION_COLUMNS)}) "
                f"VALUES (?{', ?' * len(RENDITION_COLUMNS)})",
                [(video_id, *(getattr(r, n) for n in RENDITION_COLUMNS)) for r in renditions],
            )
            c.executemany(
                f"INSERT INTO published_files (video_id, {columns(FILE_COLUMNS)}) "
                "VALUES (?, ?, ?, ?)",
                [(video_id, f.path, f.size, f.rendition) for f in files],
            )
            return self._update_video(
                c,
                video_id,
                "status = 'READY', failure_reason = NULL, published_at = ?",
                (self._now(),),
            )

    def search(
        self, query: str, *, limit: int = 20, status: VideoStatus | None = None
    ) -> list[SearchHit]:
        _check_limit(limit, MAX_PAGE)
        expression = fts.match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT {columns(VIDEO_COLUMNS, 'v')}, {fts.bm25_call('videos_fts')} AS score "
            "FROM videos_fts JOIN videos AS v ON v.id = videos_fts.rowid "
            "WHERE videos_fts MATCH ? AND v.deleted_at IS NULL"
        )
        params: list[object] = [expression]
        if status is not None:
            sql += " AND v.status = ?"
            params.append(check_status(status))
        sql += " ORDER BY score, v.video_id LIMIT ?"
        with self._tx(write=False) as c:
            rows = c.execute(sql, (*params, limit)).fetchall()
        hits = []
        for row in rows:
            fields = dict(row)
            score = float(fields.pop("score"))
            hits.append(SearchHit(video=video_from(fields), score=score))
        return hits

    def increment_views(self, video_id: str, n: int = 1) -> int:
        if not isinstance(n, int) or n < 0:
            raise Invalid("views are added in whole non-negative numbers")
        with self._tx() as c:
            row = c.execute(
                "UPDATE videos SET view_count = view_count + ? "
                "WHERE video_id = ? AND deleted_at IS NULL RETURNING view_count",
                (n, video_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no video {video_id!r}")
            return int(row[0])

    def delete_video(self, video_id: str, *, hard: bool = False) -> tuple[PublishedFile, ...]:
        with self._tx() as c:
            _load_video(c, video_id, include_deleted=hard)
            files = _files(c, video_id)
            if hard:
                c.execute("DELETE FROM videos WHERE video_id = ?", (video_id,))
                return files
            for table in ("jobs", "published_files", "renditions"):
                c.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))
            self._update_video(c, video_id, "deleted_at = ?", (self._now(),))
            return files

    def rerun(
        self, video_id: str, *, jobs: Sequence[JobSpec] = (), keep_done: bool = False
    ) -> Video:
        check_specs(jobs)
        with self._tx() as c:
            video = _load_video(c, video_id)
            if video.status != "FAILED":
                raise Conflict(f"video {video_id} is {video.status}; only FAILED videos re-run")
            if keep_done:
                queue.reset_unfinished(c, video_id, self._now())
            else:
                c.execute("DELETE FROM jobs WHERE video_id = ?", (video_id,))
            self._update_video(c, video_id, "status = 'PENDING', failure_reason = NULL", ())
            queue.enqueue(c, video_id, jobs, self._now())
            return _load_video(c, video_id)

    def find_videos(self, video_ids: Sequence[str]) -> dict[str, Video]:
        ids = list(dict.fromkeys(video_ids))
        found: dict[str, Video] = {}
        with self._tx(write=False) as c:
            for start in range(0, len(ids), MAX_PAGE):  # under SQLite's bound-parameter limit
                batch = ids[start : start + MAX_PAGE]
                marks = ", ".join("?" * len(batch))
                rows = c.execute(
                    f"SELECT {VIDEOS} FROM videos WHERE video_id IN ({marks})", batch
                ).fetchall()
                found.update((v.video_id, v) for v in map(video_from, rows))
        return found

    def _insert_video(
        self,
        c: sqlite3.Connection,
        video_id: str | None,
        values: tuple[str, str, str],
        source_path: str | None,
    ) -> Video:
        now = self._now()
        row = c.execute(
            "INSERT INTO videos (video_id, title, description, tags, source_path, created_at, "
            f"updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {VIDEOS}",
            (
                check_video_id(new_id() if video_id is None else video_id),
                *values,
                source_path,
                now,
                now,
            ),
        ).fetchone()
        return video_from(row)

    def _update_video(
        self, c: sqlite3.Connection, video_id: str, sets: str, params: Sequence[object]
    ) -> Video:
        """``UPDATE videos SET {sets}`` of a live video, bumping ``updated_at``."""
        row = c.execute(
            f"UPDATE videos SET {sets}, updated_at = ? WHERE video_id = ? AND deleted_at IS NULL "
            f"RETURNING {VIDEOS}",
            (*params, self._now(), video_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no video {video_id!r}")
        return video_from(row)

    # -- uploads -----------------------------------------------------------------------------

    def create_upload(
        self,
        size: int,
        *,
        title: str,
        temp_path: str,
        description: str = "",
        tags: Iterable[str] = (),
        sha256: str | None = None,
        upload_id: str | None = None,
    ) -> Upload:
        if not isinstance(size, int) or size < 1:
            raise Invalid("an upload's size is a whole number of bytes >= 1")
        values = _video_values(title, description, tags)
        check_text("temp_path", temp_path, 4096, empty_ok=False)
        now = self._now()
        with self._tx() as c:
            row = c.execute(
                "INSERT INTO uploads (upload_id, size, sha256_expected, title, description, "
                "tags, temp_path, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"RETURNING {UPLOADS}",
                (
                    check_video_id(new_id() if upload_id is None else upload_id),
                    size,
                    check_sha256(sha256),
                    *values,
                    temp_path,
                    now,
                    now,
                ),
            ).fetchone()
            return upload_from(row)

    def get_upload(self, upload_id: str) -> Upload:
        with self._tx(write=False) as c:
            return _load_upload(c, upload_id)

    def add_upload_bytes(self, upload_id: str, offset: int, length: int) -> Upload:
        if offset < 0 or length < 0:
            raise Invalid("offset and length are >= 0")
        with self._tx() as c:
            upload = _load_upload(c, upload_id)
            if upload.status != "open":
                raise Conflict(f"upload {upload_id} is {upload.status}")
            if offset != upload.received:
                raise Conflict(
                    f"upload {upload_id} has {upload.received} bytes; send from byte "
                    f"{upload.received}, not {offset}"
                )
            if offset + length > upload.size:
                raise Invalid(f"upload {upload_id} declared {upload.size} bytes")
            return self._update_upload(c, upload_id, "received = ?", (offset + length,))

    def complete_upload(
        self,
        upload_id: str,
        *,
        sha256: str,
        source_path: str,
        jobs: Sequence[JobSpec] = (),
        video_id: str | None = None,
    ) -> Video:
        actual = check_sha256(sha256)
        check_specs(jobs)
        with self._tx() as c:
            upload = _load_upload(c, upload_id)
            if upload.status == "complete" and upload.video_id is not None:
                return _load_video(c, upload.video_id, include_deleted=True)
            if upload.status != "open":
                raise Conflict(f"upload {upload_id} is {upload.status}")
            if upload.received != upload.size:
                raise Conflict(f"upload {upload_id} has {upload.received} of {upload.size} bytes")
            mismatch = upload.sha256_expected not in (None, actual)
            if not mismatch:
                values = (upload.title, upload.description, dump_json(list(upload.tags)))
                video = self._insert_video(c, video_id, values, source_path)
                queue.enqueue(c, video.video_id, jobs, self._now())
                self._update_upload(
                    c,
                    upload_id,
                    "status = 'complete', sha256_actual = ?, video_id = ?",
                    (actual, video.video_id),
                )
                return video
            self._update_upload(c, upload_id, "status = 'aborted', sha256_actual = ?", (actual,))
        # Committed: the upload stays aborted for everyone to see, and this caller learns why.
        raise Conflict(f"upload {upload_id}: sha256 differs from the declared one")

    def abort_upload(self, upload_id: str, *, idle_before: float | None = None) -> Upload:
        with self._tx() as c:
            upload = _load_upload(c, upload_id)
            if upload.status == "complete":
                raise Conflict(f"upload {upload_id} is complete")
            if idle_before is not None and (
                upload.status != "open" or upload.updated_at >= idle_before
            ):
                raise Conflict(f"upload {upload_id} is {upload.status} and no longer idle")
            return self._update_upload(c, upload_id, "status = 'aborted'", ())

    def stale_uploads(self, before: float, *, limit: int = MAX_PAGE) -> list[Upload]:
        _check_limit(limit, MAX_PAGE)
        with self._tx(write=False) as c:
            rows = c.execute(
                f"SELECT {UPLOADS} FROM uploads WHERE status = 'open' AND updated_at < ? "
                "ORDER BY updated_at, upload_id LIMIT ?",
                (float(before), limit),
            ).fetchall()
        return [upload_from(r) for r in rows]

    def _update_upload(
        self, c: sqlite3.Connection, upload_id: str, sets: str, params: Sequence[object]
    ) -> Upload:
        row = c.execute(
            f"UPDATE uploads SET {sets}, updated_at = ? WHERE upload_id = ? RETURNING {UPLOADS}",
            (*params, self._now(), upload_id),
        ).fetchone()
        return upload_from(row)

    # -- jobs --------------------------------------------------------------------------------

    def enqueue(self, video_id: str, spec: JobSpec) -> Job:
        return self.enqueue_many(video_id, (spec,))[0]

    def enqueue_many(self, video_id: str, specs: Sequence[JobSpec]) -> list[Job]:
        check_specs(specs)
        with self._tx() as c:
            _load_video(c, video_id)
            return queue.enqueue(c, video_id, specs, self._now())

    def claim(
        self, worker_id: str, kinds: Sequence[str] | None = None, lease_s: float = DEFAULT_LEASE_S
    ) -> Job | None:
        check_text("worker id", worker_id, 256, empty_ok=False)
        check_positive("lease_s", lease_s)
        with self._tx() as c:
            return queue.claim(c, worker_id, kinds, lease_s, self._now())

    def extend(self, job_id: int, worker_id: str, lease_s: float) -> bool:
        check_positive("lease_s", lease_s)
        with self._tx() as c:
            return queue.extend(c, job_id, worker_id, lease_s, self._now())

    def release(self, job_id: int, worker_id: str) -> bool:
        with self._tx() as c:
            return queue.release(c, job_id, worker_id, self._now())

    def complete(
        self,
        job_id: int,
        worker_id: str,
        result: object = None,
        *,
        then: Sequence[JobSpec] = (),
        when_all_done: Sequence[str] = (),
    ) -> bool:
        check_specs(then)
        with self._tx() as c:
            now = self._now()
            video_id = queue.complete(c, job_id, worker_id, result, now)
            if video_id is None:
                return False
            if all(queue.all_done(c, video_id, kind) for kind in when_all_done):
                queue.enqueue(c, video_id, then, now)
            return True

    def fail(
        self, job_id: int, worker_id: str, error: str, *, permanent: bool = False
    ) -> Job | None:
        with self._tx() as c:
            return queue.fail(
                c, job_id, worker_id, error, permanent=permanent, now=self._now(), retry=self._retry
            )

    def get_job(self, job_id: int) -> Job:
        with self._tx(write=False) as c:
            return queue.get(c, job_id)

    def list_jobs(self, video_id: str) -> list[Job]:
        with self._tx(write=False) as c:
            return queue.of_video(c, video_id)

    def counts(self, video_id: str) -> dict[str, JobCounts]:
        with self._tx(write=False) as c:
            return queue.counts(c, video_id)

    def all_done(self, video_id: str, kind: str) -> bool:
        with self._tx(write=False) as c:
            return queue.all_done(c, video_id, kind)

    def pending_jobs(self, kinds: Sequence[str] | None = None) -> int:
        if kinds is not None and (isinstance(kinds, str) or not kinds):
            raise Invalid("kinds is None (any kind) or a list of at least one kind")
        with self._tx(write=False) as c:
            counts, _oldest = queue.backlog(c, self._now())
        return sum(n for (kind, _state), n in counts.items() if kinds is None or kind in kinds)

    def stats(self) -> CatalogStats:
        with self._tx(write=False) as c:
            jobs, oldest_due_s = queue.backlog(c, self._now())
            rows = c.execute(
                "SELECT status, count(*) FROM videos WHERE deleted_at IS NULL GROUP BY status"
            ).fetchall()
            return CatalogStats(
                jobs=jobs, oldest_due_s=oldest_due_s, videos={s: int(n) for s, n in rows}
            )


def _video_values(title: str, description: str, tags: Iterable[str]) -> tuple[str, str, str]:
    """Checked (title, description, tags JSON) for a new video or upload."""
    return (
        check_text("title", title, MAX_TITLE, empty_ok=False),
        check_text("description", description, MAX_DESCRIPTION, empty_ok=True),
        dump_json(list(check_tags(tags))),
    )


def _load_video(c: sqlite3.Connection, video_id: str, *, include_deleted: bool = False) -> Video:
    row = c.execute(f"SELECT {VIDEOS} FROM videos WHERE video_id = ?", (video_id,)).fetchone()
    if row is None or (row["deleted_at"] is not None and not include_deleted):
        raise NotFound(f"no video {video_id!r}")
    return video_from(row)


def _load_upload(c: sqlite3.Connection, upload_id: str) -> Upload:
    row = c.execute(f"SELECT {UPLOADS} FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        raise NotFound(f"no upload {upload_id!r}")
    return upload_from(row)


def _files(c: sqlite3.Connection, video_id: str) -> tuple[PublishedFile, ...]:
    rows = c.execute(
        f"SELECT {columns(FILE_COLUMNS)} FROM published_files WHERE video_id = ? ORDER BY path",
        (video_id,),
    ).fetchall()
    return tuple(file_from(r) for r in rows)


def _check_limit(limit: int, maximum: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise Invalid(f"limit must be between 1 and {maximum}")


def _is_a_catalog(catalog: SqliteCatalog) -> Catalog:
    """Never called: mypy checks here that :class:`SqliteCatalog` implements :class:`Catalog`."""
    return catalog

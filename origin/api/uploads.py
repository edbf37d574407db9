"""Resumable uploads, in the spirit of tus and of GCS resumable uploads.

```
POST   /api/v1/uploads                {title, size, sha256, description?, tags?} -> 201
PUT    /api/v1/uploads/{id}           body = bytes a..b, Content-Range: bytes a-b/size
                                      (no Content-Range: the whole file in one request)
HEAD   /api/v1/uploads/{id}           Upload-Offset: where to resume
GET    /api/v1/uploads/{id}           the upload as JSON (received, status, video_id)
POST   /api/v1/uploads/{id}/complete  after the last byte (a PUT that ends the file completes)
DELETE /api/v1/uploads/{id}           abort: the upload is closed and its bytes removed
```

A part must start at ``received`` (else 409 with ``received``, so the client resumes from
there). The body streams to the temp file in chunks, written off the event loop; a body longer
than its part (or than the maximum upload size) stops with 413 as soon as it passes, and none of
that part is counted. When the connection drops or stalls mid-part (no byte for
``api.part_idle_timeout_s``), the bytes written so far are fsynced and counted: the client asks
``HEAD`` for the offset and sends the rest.

Completion hashes the whole file off the loop (SHA-256), compares it with the declared checksum
(a mismatch aborts the upload and removes the file: 422), renames the file to
``{media.sources}/{video_id}/source`` and lets the catalog create the PENDING video and enqueue
its pipeline in one transaction. The video's id is the upload's id, so a completion that is
retried after any crash finds its file and its video again: completion is idempotent.

One request at a time works on an upload (a per-upload lock); a second one waits for it up to
:data:`LOCK_WAIT_S` seconds, then gets 409.

Metrics (:class:`~origin.metrics.serve.ServeMetrics`): bytes recorded, refusals of creating,
writing and completing uploads by their error code, and parts ended by the idle timeout.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientPayloadError, StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from origin.api.boundary import read_json, run_catalog
from origin.api.errors import ApiError, bad_request, json_response
from origin.api.input import check_id, parse_content_range, parse_new_upload
from origin.api.render import upload_json, upload_url, video_json
from origin.api.upload_files import (
    PartFile,
    UploadDataLost,
    move_into_place,
    remove_quietly,
    sha256_file,
    source_path,
    whole_file,
)
from origin.catalog import Catalog, Upload, Video
from origin.catalog.models import new_id
from origin.metrics.serve import ServeMetrics
from origin.pipeline.start import first_jobs

log = logging.getLogger("origin.api.uploads")

WRITE_CHUNK = 1 << 20
"""Bytes gathered from the network before one write in a worker thread; bounds the memory one
upload request holds (plus aiohttp's read buffer)."""
LOCK_WAIT_S = 10.0
"""How long a request waits for another one on the same upload before answering 409."""

UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
_NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}


@dataclass(frozen=True, slots=True)
class UploadSettings:
    max_upload_size: int
    """Bytes; a larger declared size is refused at once (413)."""
    upload_dir: Path
    """Temp files ``{upload_id}.part`` while bytes arrive."""
    sources: Path
    """Completed uploads: ``{sources}/{video_id}/source``."""
    max_attempts: int
    """Attempts of each pipeline job the completion enqueues."""
    part_idle_timeout_s: float = 60.0
    """A part whose body sends nothing for this long is treated like a dropped connection."""


class Outcome(enum.Enum):
    """How the body of one part ended."""

    WHOLE = "whole"
    """Every byte of the part arrived."""
    SHORT = "short"
    """The body ended (cleanly) before the part did; what came is kept."""
    DROPPED = "dropped"
    """The connection broke; what came is kept."""
    STALLED = "stalled"
    """No byte arrived for ``part_idle_timeout_s``; what came is kept."""
    TOO_LARGE = "too_large"
    """The body went past the part's end; none of it is kept."""


async def receive(content: StreamReader, part: PartFile, limit: int, idle_s: float) -> Outcome:
    """Stream ``content`` into ``part`` until EOF; stop at once past ``limit`` bytes, or when
    nothing arrives for ``idle_s`` seconds."""
    pending = bytearray()
    seen = 0
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await content.readany()
        except TimeoutError:
            outcome = Outcome.STALLED
            break
        except (ConnectionError, ClientPayloadError, HttpProcessingError):
            outcome = Outcome.DROPPED
            break
        if not chunk:
            outcome = Outcome.WHOLE if seen == limit else Outcome.SHORT
            break
        seen += len(chunk)
        if seen > limit:
            return Outcome.TOO_LARGE
        pending += chunk
        if len(pending) >= WRITE_CHUNK:
            data, pending = pending, bytearray()
            await _write(part, data)
    if pending:
        await _write(part, pending)
    return outcome


async def _write(part: PartFile, data: bytearray) -> None:
    """``part.write`` in a worker thread. A cancellation (shutdown) waits for the write to end
    before it goes on: the caller then syncs and closes the file, which must not race a write
    still running in the thread."""
    write = asyncio.ensure_future(asyncio.to_thread(part.write, data))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write])
        raise


def _close_part(part: PartFile, *, keep: bool) -> int:
    """Make the part durable (``keep``) or drop it, then close; return the bytes kept."""
    try:
        if keep:
            return part.sync()
        part.discard()
        return 0
    finally:
        part.close()


def _offset_conflict(upload: Upload, detail: str) -> ApiError:
    return ApiError(
        409,
        "offset_mismatch",
        detail,
        headers={UPLOAD_OFFSET: str(upload.received)},
        received=upload.received,
        size=upload.size,
    )


def _storage_error(e: OSError) -> ApiError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(507, "insufficient_storage", "the origin's upload disk is full")
    log.error("upload file error", extra={"error": str(e)})
    return ApiError(500, "storage_error", "the origin cannot write the upload")


class KeyedLocks:
    """One asyncio lock per key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str, wait_s: float) -> AsyncIterator[bool]:
        """Hold the key's lock; yields False (holding nothing) if it was not free in time."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await lock.acquire()
            except TimeoutError:
                yield False
                return
            try:
                yield True
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class UploadRoutes:
    """The upload handlers, bound to one catalog and the upload settings."""

    def __init__(self, catalog: Catalog, settings: UploadSettings, metrics: ServeMetrics) -> None:
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self._locks = KeyedLocks()

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """Count an :class:`ApiError` leaving the block by its code, and let it go on."""
        try:
            yield
        except ApiError as e:
            self._metrics.upload_refused(e.code)
            raise

    @asynccontextmanager
    async def _exclusive(self, upload_id: str) -> AsyncIterator[None]:
        async with self._locks.hold(upload_id, LOCK_WAIT_S) as held:
            if not held:
                upload = await run_catalog(self._catalog.get_upload, upload_id)
                raise _offset_conflict(upload, "another request is writing this upload; retry")
            yield

    async def create(self, request: web.Request) -> web.Response:
        with self._refusals():
            return await self._create(request)

    async def _create(self, request: web.Request) -> web.Response:
        new = parse_new_upload(await read_json(request), self._settings.max_upload_size)
        upload_id = new_id()
        temp = self._settings.upload_dir / f"{upload_id}.part"
        upload = await run_catalog(
            self._catalog.create_upload,
            new.size,
            title=new.title,
            temp_path=str(temp),
            description=new.description,
            tags=new.tags,
            sha256=new.sha256,
            upload_id=upload_id,
        )
        log.info("upload created", extra={"upload_id": upload_id, "size": new.size})
        url = upload_url(upload_id)
        return json_response(upload_json(upload), 201, {hdrs.LOCATION: url, **_NO_STORE})

    async def status(self, request: web.Request) -> web.Response:
        upload_id = check_id(request.match_info["upload_id"], "upload id")
        upload = await run_catalog(self._catalog.get_upload, upload_id)
        return self._answer(upload)

    def _answer(self, upload: Upload, video: Video | None = None) -> web.Response:
        body = upload_json(upload)
        if video is not None:
            body["video"] = video_json(video)
        headers = {
            UPLOAD_OFFSET: str(upload.received),
            UPLOAD_LENGTH: str(upload.size),
            **_NO_STORE,
        }
        return json_response(body, 200, headers)

    async def put_part(self, request: web.Request) -> web.StreamResponse:
        try:
            with self._refusals():
                upload_id = check_id(request.match_info["upload_id"], "upload id")
                async with self._exclusive(upload_id):
                    return await self._put_part(request, upload_id)
        except ApiError as e:
            # The body may be unread: close the connection after the answer.
            e.close_connection = True
            raise

    async def _put_part(self, request: web.Request, upload_id: str) -> web.StreamResponse:
        upload = await run_catalog(self._catalog.get_upload, upload_id)
        if upload.status == "complete":
            return await self._finish(upload)  # a retried last part: the same answer again
        if upload.status == "aborted":
            raise ApiError(409, "aborted", f"upload {upload_id} was aborted")
        part = parse_content_range(request.headers.get(hdrs.CONTENT_RANGE), upload.size)
        if part.start != upload.received:
            raise _offset_conflict(
                upload, f"the upload has {upload.received} bytes; send from byte {upload.received}"
            )
        declared = request.content_length
        if declared is not None and declared > part.length:
            raise ApiError(413, "too_large", f"the body ({declared} bytes) is longer than the part")
        if declared is not None and declared < part.length:
            raise bad_request(
                f"Content-Length {declared} differs from the Content-Range ({part.length})",
                "bad_range",
            )
        upload = await self._write_part(request, upload, part.length)
        if upload.received == upload.size:
            return await self._finish(upload)
        return self._answer(upload)

    async def _write_part(self, request: web.Request, upload: Upload, length: int) -> Upload:
        """Stream the body into the temp file and record what was kept."""
        temp = Path(upload.temp_path)
        try:
            part = await asyncio.to_thread(PartFile.open, temp, upload.received)
        except UploadDataLost as e:
            await run_catalog(self._catalog.abort_upload, upload.upload_id)
            await asyncio.to_thread(remove_quietly, temp)
            log.error("upload data lost", extra={"upload_id": upload.upload_id, "error": str(e)})
            raise ApiError(410, "upload_lost", "the upload's bytes are lost; start again") from e
        except OSError as e:
            raise _storage_error(e) from e
        try:
            outcome = await receive(
                request.content, part, length, self._settings.part_idle_timeout_s
            )
        except asyncio.CancelledError:
            # Shutting down: keep what arrived, then let the cancellation go on.
            await asyncio.shield(self._keep(upload, part, Outcome.DROPPED))
            raise
        except OSError as e:
            await asyncio.to_thread(_close_part, part, keep=False)
            raise _storage_error(e) from e
        except BaseException:
            await asyncio.to_thread(_close_part, part, keep=False)
            raise
        return await self._keep(upload, part, outcome)

    async def _keep(self, upload: Upload, part: PartFile, outcome: Outcome) -> Upload:
        keep = outcome is not Outcome.TOO_LARGE
        kept = await asyncio.to_thread(_close_part, part, keep=keep)
        if not keep:
            raise ApiError(
                413,
                "too_large",
                "the body is longer than the part it declared; none of it was kept",
                received=upload.received,
            )
        if kept:
            upload = await run_catalog(
                self._catalog.add_upload_bytes, upload.upload_id, upload.received, kept
            )
            self._metrics.upload_received(kept)
        if outcome is Outcome.STALLED:
            self._metrics.upload_idle_timeout()
        if outcome is not Outcome.WHOLE:
            log.info(
                "upload part ended early",
                extra={
                    "upload_id": upload.upload_id,
                    "outcome": outcome.value,
                    "kept": kept,
                    "received": upload.received,
                },
            )
        return upload

    async def complete(self, request: web.Request) -> web.StreamResponse:
        with self._refusals():
            upload_id = check_id(request.match_info["upload_id"], "upload id")
            async with self._exclusive(upload_id):
                upload = await run_catalog(self._catalog.get_upload, upload_id)
                return await self._finish(upload)

    async def _finish(self, upload: Upload) -> web.Response:
        """Complete a fully received upload (idempotent); the caller holds its lock."""
        if upload.status == "aborted":
            raise ApiError(409, "aborted", f"upload {upload.upload_id} was aborted")
        if upload.status == "complete" and upload.video_id is not None:
            video = await run_catalog(
                self._catalog.get_video, upload.video_id, include_deleted=True
            )
            return self._answer(upload, video)
        if upload.received < upload.size:
            raise _offset_conflict(
                upload, f"the upload has {upload.received} of {upload.size} bytes"
            )
        video = await self._complete(upload)
        upload = await run_catalog(self._catalog.get_upload, upload.upload_id)
        return self._answer(upload, video)

    async def _complete(self, upload: Upload) -> Video:
        temp = Path(upload.temp_path)
        dest = source_path(self._settings.sources, upload.upload_id)
        try:
            digest = await asyncio.to_thread(lambda: sha256_file(whole_file(temp, dest)))
        except FileNotFoundError as e:
            await run_catalog(self._catalog.abort_upload, upload.upload_id)
            raise ApiError(410, "upload_lost", "the upload's file is gone; start again") from e
        expected = upload.sha256_expected
        if expected is not None and digest != expected:
            await run_catalog(self._catalog.abort_upload, upload.upload_id)
            await asyncio.to_thread(remove_quietly, temp)
            log.warning(
                "upload checksum mismatch",
                extra={"upload_id": upload.upload_id, "expected": expected, "actual": digest},
            )
            raise ApiError(
                422,
                "checksum_mismatch",
                "the received bytes do not have the declared sha256; the upload is aborted",
                expected=expected,
                actual=digest,
            )
        try:
            await asyncio.to_thread(move_into_place, temp, dest)
        except OSError as e:
            raise _storage_error(e) from e
        video = await run_catalog(
            self._catalog.complete_upload,
            upload.upload_id,
            sha256=digest,
            source_path=str(dest),
            jobs=first_jobs(self._settings.max_attempts),
            video_id=upload.upload_id,
        )
        log.info(
            "upload complete",
            extra={"upload_id": upload.upload_id, "video_id": video.video_id, "size": upload.size},
        )
        return video

    async def abort(self, request: web.Request) -> web.Response:
        upload_id = check_id(request.match_info["upload_id"], "upload id")
        async with self._exclusive(upload_id):
            upload = await run_catalog(self._catalog.abort_upload, upload_id)
            await asyncio.to_thread(remove_quietly, Path(upload.temp_path))
        log.info("upload aborted", extra={"upload_id": upload_id})
        return self._answer(upload)

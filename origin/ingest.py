"""``vodedge-origin ingest``: upload one video file to an origin and follow its pipeline.

```
vodedge-origin ingest FILE --title T --server URL [--token T | env VODEDGE_ORIGIN_TOKEN]
                      [--description D] [--tag X ...] [--part-size 8MiB] [--no-follow]
                      [--poll-s 2]
```

Steps: hash the file (SHA-256, so the origin can check what it received), create a resumable
upload, send it in parts of ``--part-size`` bytes, then poll the video's jobs until it is READY
or FAILED. A part that fails on the way (dropped connection, timeout, 5xx) is retried after a
back-off from the offset the origin reports, so only what did not arrive is sent again; after
:data:`MAX_FAILURES` failures in a row without progress the command gives up.

Output: the video id alone on stdout as soon as the upload is complete (for scripts); progress
on stderr, a bar when stderr is a terminal, else a line every :data:`LOG_EVERY_S` seconds.

Exit codes: 0 READY (or uploaded, with ``--no-follow``); 1 the upload or the pipeline failed
(the reason on stderr); 2 bad arguments, no token, unreadable file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from origin.api.upload_files import sha256_file
from vodedge.configfile import parse_base_url
from vodedge.sizes import format_size, parse_size

TOKEN_ENV = "VODEDGE_ORIGIN_TOKEN"
API = "/api/v1"
DEFAULT_PART_SIZE = 8 * 2**20
MIN_PART_SIZE = 1024
READ_CHUNK = 256 * 1024
"""Bytes read from the file per step while a part streams."""
MAX_FAILURES = 8
"""Failed requests in a row (without progress) before giving up."""
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 15.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
FINISH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=3600)
"""For requests that complete the upload: the origin hashes the whole file before answering."""
POLL_S = 2.0
"""How often the pipeline's progress is polled."""
LOG_EVERY_S = 5.0
"""Progress line interval when stderr is not a terminal."""
DRAW_EVERY_S = 0.1
"""Progress bar redraw interval on a terminal."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507})

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class IngestError(Exception):
    """The upload or the pipeline failed; the message says why (exit 1)."""


class Transient(Exception):
    """A request that may succeed when retried (network error, timeout, 5xx)."""


@dataclass(frozen=True, slots=True)
class IngestRequest:
    path: Path
    title: str
    server: str
    """Base URL of the origin, without a trailing slash."""
    token: str
    description: str = ""
    tags: tuple[str, ...] = ()
    part_size: int = DEFAULT_PART_SIZE
    follow: bool = True
    poll_s: float = POLL_S


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="video file to upload")
    p.add_argument("--title", required=True, help="title of the video")
    p.add_argument("--description", default="", help="longer text about the video")
    p.add_argument(
        "--tag", action="append", default=[], dest="tags", metavar="TAG", help="repeatable"
    )
    p.add_argument("--server", required=True, help="origin base URL, e.g. http://origin:8081")
    p.add_argument(
        "--token",
        help=f"API token (default: ${TOKEN_ENV}; the environment keeps it out of the process list)",
    )
    p.add_argument("--part-size", default="8MiB", help="bytes per request (default: %(default)s)")
    p.add_argument(
        "--no-follow", action="store_true", help="exit once uploaded; do not wait for READY"
    )
    p.add_argument(
        "--poll-s",
        type=float,
        default=POLL_S,
        help="seconds between progress checks while following (default: %(default)s)",
    )


def request_from(args: argparse.Namespace, env: dict[str, str]) -> IngestRequest:
    """The checked request; ``ValueError`` with a message for people otherwise."""
    token = args.token or env.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"give --token or set {TOKEN_ENV}")
    try:
        server = parse_base_url(str(args.server))
    except ValueError as e:
        raise ValueError(f"--server: {e}") from None
    try:
        part_size = parse_size(args.part_size)
    except ValueError as e:
        raise ValueError(f"--part-size: {e}") from None
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"--part-size: at least {MIN_PART_SIZE} bytes")
    if not args.title.strip():
        raise ValueError("--title: must not be empty")
    if not args.poll_s > 0:
        raise ValueError("--poll-s: must be > 0")
    return IngestRequest(
        path=args.file,
        title=args.title,
        server=server,
        token=token,
        description=args.description,
        tags=tuple(args.tags),
        part_size=part_size,
        follow=not args.no_follow,
        poll_s=args.poll_s,
    )


def run(args: argparse.Namespace) -> int:
    """The ``ingest`` subcommand: exit code as in the module docstring."""
    try:
        req = request_from(args, dict(os.environ))
    except ValueError as e:
        print(f"vodedge-origin ingest: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not req.path.is_file():
        print(f"vodedge-origin ingest: {req.path}: not a readable file", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(ingest(req, sys.stdout, sys.stderr))
    except IngestError as e:
        print(f"vodedge-origin ingest: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("vodedge-origin ingest: interrupted", file=sys.stderr)
        return EXIT_FAILED


@dataclass
class Progress:
    """Upload progress on ``stream``: a redrawn bar on a terminal, else periodic lines."""

    total: int
    stream: TextIO
    tty: bool
    clock: Callable[[], float] = time.monotonic
    _start: float = field(init=False)
    _last: float = field(init=False)
    _start_bytes: int = field(init=False, default=-1)
    done: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._start = self._last = self.clock()

    def update(self, done: int) -> None:
        now = self.clock()
        if self._start_bytes < 0:
            self._start_bytes = done
        self.done = done
        if now - self._last < (DRAW_EVERY_S if self.tty else LOG_EVERY_S) and done < self.total:
            return
        self._last = now
        self._show(now)

    def rate(self, now: float) -> float:
        elapsed = now - self._start
        return (self.done - max(self._start_bytes, 0)) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        sizes = f"{format_size(self.done)}/{format_size(self.total)}"
        return f"{pct:5.1f}% {sizes} {format_size(int(self.rate(now)))}/s"

    def _show(self, now: float) -> None:
        if self.tty:
            width = 30
            filled = width * self.done // self.total if self.total else width
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {self.line(now)}  ")
        else:
            self.stream.write(f"uploaded {self.line(now)}\n")
        self.stream.flush()

    def finish(self) -> None:
        self._show(self.clock())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Client:
    """The origin API over one aiohttp session; answers are (status, JSON object)."""

    def __init__(self, session: aiohttp.ClientSession, server: str) -> None:
        self._session = session
        self._server = server

    async def call(
        self,
        method: str,
        path: str,
        *,
        payload: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeouts: aiohttp.ClientTimeout = REQUEST_TIMEOUT,
    ) -> tuple[int, dict[str, Any]]:
        """One request; network errors, timeouts and retryable statuses raise Transient."""
        try:
            async with self._session.request(
                method,
                self._server + path,
                json=payload,
                data=data,
                headers=headers,
                timeout=timeouts,
            ) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise Transient(f"{method} {path}: {type(e).__name__}: {e}") from e
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status in RETRY_STATUSES:
            raise Transient(f"{method} {path}: {status} {_reason(body)}")
        return status, body


def _reason(body: dict[str, Any]) -> str:
    error, detail = body.get("error"), body.get("detail")
    return f"{error}: {detail}" if error else "(no details)"


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1)))


class Uploader:
    """Sends one file as parts, resuming from the origin's offset after failures."""

    def __init__(self, client: Client, req: IngestRequest, fd: int, size: int, progress: Progress):
        self._client = client
        self._req = req
        self._fd = fd
        self._size = size
        self._progress = progress
        self._failures = 0

    async def _failed(self, e: Transient) -> None:
        self._failures += 1
        if self._failures > MAX_FAILURES:
            raise IngestError(f"giving up after {MAX_FAILURES} failed tries: {e}")
        delay = _backoff(self._failures)
        self._progress.stream.write(f"\nretrying in {delay:.1f} s: {e}\n")
        self._progress.stream.flush()
        await asyncio.sleep(delay)

    async def send(self, upload: dict[str, Any]) -> dict[str, Any]:
        """Send what the origin lacks; return the completed upload (with its video)."""
        url = str(upload["upload_url"])
        offset = int(upload["received"])
        while True:
            if upload.get("status") == "complete":
                return upload
            try:
                if offset >= self._size:
                    status, body = await self._client.call(
                        "POST", url + "/complete", timeouts=FINISH_TIMEOUT
                    )
                else:
                    status, body = await self._put(url, offset)
            except Transient as e:
                await self._failed(e)
                offset = await self._offset(url, offset)
                continue
            if status == 409 and "received" in body:
                offset = int(body["received"])  # the origin has other bytes: resume there
                continue
            if status != 200:
                raise IngestError(f"the origin refused the upload: {status} {_reason(body)}")
            received = int(body["received"])
            if received <= offset and body.get("status") != "complete":
                await self._failed(Transient(f"the origin kept no bytes of the part at {offset}"))
            else:
                self._failures = 0
            upload, offset = body, received
            self._progress.update(offset)

    async def _put(self, url: str, offset: int) -> tuple[int, dict[str, Any]]:
        end = min(offset + self._req.part_size, self._size)
        headers = {
            "Content-Range": f"bytes {offset}-{end - 1}/{self._size}",
            "Content-Length": str(end - offset),
            "Content-Type": "application/octet-stream",
        }
        last = end == self._size
        return await self._client.call(
            "PUT",
            url,
            data=self._body(offset, end),
            headers=headers,
            timeouts=FINISH_TIMEOUT if last else REQUEST_TIMEOUT,
        )

    async def _body(self, start: int, end: int) -> AsyncIterator[bytes]:
        pos = start
        while pos < end:
            chunk = await asyncio.to_thread(os.pread, self._fd, min(READ_CHUNK, end - pos), pos)
            if not chunk:
                raise IngestError(f"{self._req.path} got shorter while it was uploaded")
            pos += len(chunk)
            yield chunk
            self._progress.update(pos)

    async def _offset(self, url: str, guess: int) -> int:
        """Where the origin wants the next byte; ``guess`` if it cannot tell right now."""
        try:
            status, body = await self._client.call("GET", url)
        except Transient:
            return guess
        if status != 200:
            raise IngestError(f"the upload is gone: {status} {_reason(body)}")
        if body.get("status") == "aborted":
            raise IngestError("the upload was aborted on the origin")
        return int(body["received"])


async def ingest(req: IngestRequest, stdout: TextIO, stderr: TextIO) -> int:
    """Upload ``req.path`` and (with ``req.follow``) wait for the pipeline; the exit code."""
    size = (await asyncio.to_thread(req.path.stat)).st_size
    if size == 0:
        raise IngestError(f"{req.path} is empty")
    stderr.write(f"hashing {req.path} ({format_size(size)})\n")
    digest = await asyncio.to_thread(sha256_file, req.path)
    headers = {"Authorization": f"Bearer {req.token}"}
    fd = await asyncio.to_thread(os.open, req.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            client = Client(session, req.server)
            upload = await _create(client, req, size, digest)
            stderr.write(f"upload {upload['upload_id']}: sending {format_size(size)}\n")
            progress = Progress(size, stderr, stderr.isatty())
            progress.update(int(upload["received"]))
            done = await Uploader(client, req, fd, size, progress).send(upload)
            progress.finish()
            video_id = str(done["video_id"])
            stdout.write(f"{video_id}\n")
            stdout.flush()
            status = done.get("video", {}).get("status", "PENDING")
            stderr.write(f"uploaded: video {video_id} is {status}\n")
            if not req.follow:
                return EXIT_OK
            return await follow(client, video_id, stderr, req.poll_s)
    finally:
        os.close(fd)


async def _create(client: Client, req: IngestRequest, size: int, digest: str) -> dict[str, Any]:
    body: dict[str, Any] = {"title": req.title, "size": size, "sha256": digest}
    if req.description:
        body["description"] = req.description
    if req.tags:
        body["tags"] = list(req.tags)
    for failures in range(1, MAX_FAILURES + 2):
        try:
            status, answer = await client.call("POST", f"{API}/uploads", payload=body)
        except Transient as e:
            if failures > MAX_FAILURES:
                raise IngestError(f"cannot create the upload: {e}") from e
            await asyncio.sleep(_backoff(failures))
            continue
        if status != 201:
            raise IngestError(f"the origin refused the upload: {status} {_reason(answer)}")
        return answer
    raise AssertionError("unreachable")


def describe(progress: dict[str, Any]) -> str:
    """One line about the pipeline: status, percent, stage and per-stage counts."""
    stages = ", ".join(
        f"{kind} {c['done']}/{c['total']}" for kind, c in progress.get("stages", {}).items()
    )
    stage = progress.get("stage")
    line = f"{progress['status']} {progress['percent']:.0f}%"
    if stage:
        line += f" (now: {stage})"
    return f"{line}; {stages}" if stages else line


async def follow(client: Client, video_id: str, stderr: TextIO, poll_s: float) -> int:
    """Poll the video's jobs until READY (0) or FAILED (1), printing changes."""
    last = ""
    failures = 0
    while True:
        try:
            status, body = await client.call("GET", f"{API}/videos/{video_id}/jobs")
        except Transient as e:
            failures += 1
            if failures > MAX_FAILURES:
                raise IngestError(f"cannot follow the video: {e}") from e
            await asyncio.sleep(_backoff(failures))
            continue
        failures = 0
        if status != 200:
            raise IngestError(f"cannot follow the video: {status} {_reason(body)}")
        line = describe(body)
        if line != last:
            stderr.write(line + "\n")
            stderr.flush()
            last = line
        if body["status"] == "READY":
            stderr.write(f"READY: /v/{video_id}/master.m3u8\n")
            return EXIT_OK
        if body["status"] == "FAILED":
            stderr.write(f"FAILED: {body.get('failure_reason') or 'no reason recorded'}\n")
            return EXIT_FAILED
        await asyncio.sleep(poll_s)

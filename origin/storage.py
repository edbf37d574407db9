"""Published media behind a small storage interface; :class:`LocalStorage` is a directory.

Keys are object paths of the published layout (``/v/{video_id}/...``), validated with
:func:`vodedge.paths.parse_object_path` before anything touches the file system. A key that
resolves (through symlinks) to a place outside the root is treated as missing.

Every file's strong ETag is the quoted xxh3-128 hex digest of its bytes. Published files never
change, so the digest is computed once and remembered per ``(real path, size, mtime_ns)``.
All file system work of one call (resolve, open, fstat, hash) happens in one worker-thread hop.

Writing (the encode pipeline and the API): a title is built in a staging directory that
:meth:`LocalStorage.staging_dir` places inside the root (same file system, never reachable by a
``/v/`` key), then :meth:`LocalStorage.publish` renames it to ``v/{video_id}`` in one step, so
readers see all of a title or none of it. :meth:`LocalStorage.remove_video` renames the title
away first and deletes it afterwards, for the same reason.

Errors: :class:`vodedge.paths.PathError` for a key that is not an object path;
:class:`StorageError` for a file that exists but cannot be read (I/O error, permissions).
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import xxhash

from vodedge.paths import PathError, parse_object_path

HASH_CHUNK = 1 << 20
"""Bytes read per step while hashing; bounds the memory one hash needs."""

DEFAULT_ETAG_CACHE_ENTRIES = 200_000
"""Remembered ETags (about 200 bytes each): a few thousand titles' worth of files."""

# errno values meaning "there is no such object" rather than "the disk is broken".
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR})


class StorageError(OSError):
    """An object exists but cannot be read (maps to 500)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Facts about one published file."""

    size: int
    mtime: float
    """Seconds since the epoch (Last-Modified)."""
    etag: str
    """Strong ETag, quoted: ``"<xxh3-128 hex>"``."""


class OpenObject:
    """A published file opened for reading, with its facts; close it (or use ``with``)."""

    __slots__ = ("file", "info")

    def __init__(self, file: io.BufferedReader, info: ObjectInfo) -> None:
        self.file = file
        self.info = info

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MediaStorage(Protocol):
    """Where published media lives (a directory now, S3-compatible later)."""

    async def stat(self, key: str) -> ObjectInfo | None:
        """Facts about ``key``, or None when there is no such object."""
        ...

    async def open(self, key: str) -> OpenObject | None:
        """``key`` opened for reading, or None when there is no such object."""
        ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a published title."""

    key: str
    """Object path ``/v/{video_id}/...``."""
    size: int


class MediaWriter(Protocol):
    """Publishing and removing whole titles (what the pipeline and the API need)."""

    def staging_dir(self, video_id: str) -> Path:
        """A fresh, empty directory to build the title in (blocking)."""
        ...

    async def publish(self, video_id: str, staging: Path) -> list[StoredFile]:
        """Make ``staging`` the title ``video_id`` in one step, replacing a previous copy;
        return its files in path order."""
        ...

    async def remove_video(self, video_id: str) -> bool:
        """Remove the title's files; False if there were none."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a plain object path (no token); raise PathError otherwise."""
    parsed = parse_object_path(key)
    if parsed.token is not None or parsed.key != key:
        raise PathError("storage keys are object paths without a token")
    return key


class EtagCache:
    """A bounded, thread-safe LRU of ETags keyed by (real path, size, mtime_ns)."""

    def __init__(self, max_entries: int = DEFAULT_ETAG_CACHE_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> str | None:
        with self._lock:
            etag = self._entries.get(key)
            if etag is not None:
                self._entries.move_to_end(key)
            return etag

    def put(self, key: tuple[str, int, int], etag: str) -> None:
        with self._lock:
            self._entries[key] = etag
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def file_etag(fd: int, size: int) -> str:
    """Quoted xxh3-128 hex digest of the first ``size`` bytes of ``fd`` (blocking)."""
    h = xxhash.xxh3_128()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(HASH_CHUNK, size - offset), offset)
        if not chunk:
            raise StorageError(errno.EIO, "file shorter than its size while hashing")
        h.update(chunk)
        offset += len(chunk)
    return f'"{h.hexdigest()}"'


STAGING = ".staging"
"""Directory under the root for titles being built or removed (no ``/v/`` key reaches it)."""


def _check_video_id(video_id: str) -> str:
    validate_key(f"/v/{video_id}/x")
    return video_id


def list_files(directory: Path, video_id: str) -> list[StoredFile]:
    """Regular files below ``directory`` as keys of title ``video_id`` (blocking)."""
    files: list[StoredFile] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        rel = os.path.relpath(dirpath, directory)
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            parts = [] if rel == "." else rel.split(os.sep)
            files.append(StoredFile("/".join(["", "v", video_id, *parts, name]), st.st_size))
    files.sort(key=lambda f: f.key)
    return files


class LocalStorage:
    """Published media in a local directory: ``{root}/v/{video_id}/...``."""

    def __init__(self, root: Path, etags: EtagCache | None = None) -> None:
        self.root = root
        self._etags = etags if etags is not None else EtagCache()

    # -- writing -----------------------------------------------------------------------------

    def staging_dir(self, video_id: str) -> Path:
        _check_video_id(video_id)
        base = self.root / STAGING
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{video_id}.", dir=base))

    async def publish(self, video_id: str, staging: Path) -> list[StoredFile]:
        _check_video_id(video_id)
        return await asyncio.to_thread(self._publish_blocking, video_id, staging)

    async def remove_video(self, video_id: str) -> bool:
        _check_video_id(video_id)
        return await asyncio.to_thread(self._remove_blocking, video_id)

    def _title_dir(self, video_id: str) -> Path:
        return self.root / "v" / video_id

    def _publish_blocking(self, video_id: str, staging: Path) -> list[StoredFile]:
        if staging.resolve().parent != (self.root / STAGING).resolve():
            raise ValueError(f"{staging} is not a staging directory of {self.root}")
        files = list_files(staging, video_id)
        target = self._title_dir(video_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync_tree(staging)
        old = self._take_away(video_id)
        os.rename(staging, target)
        fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return files

    def _remove_blocking(self, video_id: str) -> bool:
        old = self._take_away(video_id)
        if old is None:
            return False
        shutil.rmtree(old, ignore_errors=True)
        return True

    def _take_away(self, video_id: str) -> Path | None:
        """Rename the title (if any) into the staging area; return where it went."""
        target = self._title_dir(video_id)
        base = self.root / STAGING
        base.mkdir(parents=True, exist_ok=True)
        away = Path(tempfile.mkdtemp(prefix=f"{video_id}.removed.", dir=base))
        try:
            os.rename(target, away / "t")
        except FileNotFoundError:
            os.rmdir(away)
            return None
        fsync_dir(target.parent)
        return away

    # -- reading -----------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        return await asyncio.to_thread(self._stat_blocking, key)

    async def open(self, key: str) -> OpenObject | None:
        validate_key(key)
        return await asyncio.to_thread(self._open_blocking, key)

    def _stat_blocking(self, key: str) -> ObjectInfo | None:
        obj = self._open_blocking(key)
        if obj is None:
            return None
        with obj:
            return obj.info

    def _open_blocking(self, key: str) -> OpenObject | None:
        real = self._resolve(key)
        if real is None:
            return None
        try:
            # O_NONBLOCK: a FIFO planted in the root must not hang a worker thread in open().
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            if e.errno in _MISSING_ERRNOS:
                return None
            raise StorageError(e.errno, f"cannot open {key}: {e.strerror}") from e
        try:
            info = self._info(fd, real, key)
        except BaseException:
            os.close(fd)
            raise
        if info is None:
            os.close(fd)
            return None
        return OpenObject(open(fd, "rb", closefd=True), info)  # the caller closes it

    def _resolve(self, key: str) -> str | None:
        """The real path of ``key`` if it stays inside the root, else None."""
        root = os.path.realpath(self.root)
        candidate = os.path.join(root, *key.lstrip("/").split("/"))
        real = os.path.realpath(candidate)
        if os.path.commonpath((root, real)) != root or real == root:
            return None
        return real

    def _info(self, fd: int, real: str, key: str) -> ObjectInfo | None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        cache_key = (real, st.st_size, st.st_mtime_ns)
        etag = self._etags.get(cache_key)
        if etag is None:
            try:
                etag = file_etag(fd, st.st_size)
            except OSError as e:
                raise StorageError(e.errno, f"cannot read {key}: {e.strerror}") from e
            self._etags.put(cache_key, etag)
        return ObjectInfo(size=st.st_size, mtime=st.st_mtime, etag=etag)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory below ``root`` so that a rename publishes whole files."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))

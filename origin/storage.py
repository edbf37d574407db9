"""Published media behind a small storage interface; :class:`LocalStorage` is a directory.

Keys are object paths of the published layout (``/v/{video_id}/...``), validated with
:func:`vodedge.paths.parse_object_path` before anything touches the file system. A key that
resolves (through symlinks) to a place outside the root is treated as missing.

Every file's strong ETag is the quoted xxh3-128 hex digest of its bytes. Published files never
change, so the digest is computed once and remembered per ``(real path, size, mtime_ns)``.
All file system work of one call (resolve, open, fstat, hash) happens in one worker-thread hop.

Errors: :class:`vodedge.paths.PathError` for a key that is not an object path;
:class:`StorageError` for a file that exists but cannot be read (I/O error, permissions).
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import stat
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


class LocalStorage:
    """Published media in a local directory: ``{root}/v/{video_id}/...``."""

    def __init__(self, root: Path, etags: EtagCache | None = None) -> None:
        self.root = root
        self._etags = etags if etags is not None else EtagCache()

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

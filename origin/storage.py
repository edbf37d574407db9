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
readers see all of a title or none of it. Publishing never replaces or removes a title: the
rename refuses an existing ``v/{video_id}`` (``renameat2(RENAME_NOREPLACE)``), and a title in
place means an earlier (or concurrent) attempt published it already. Only the paths that start
a title over (delete, re-run) take one away: :meth:`LocalStorage.remove_video` renames the title
away first and deletes it afterwards, so readers again see all of it or none of it.

Errors: :class:`vodedge.paths.PathError` for a key that is not an object path;
:class:`StorageError` for a file that exists but cannot be read (I/O error, permissions).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import io
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

import xxhash

from vodedge.paths import PathError, parse_object_path

T = TypeVar("T")

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


READ_THREADS = 8
"""Threads that open, stat and read published files for ``/v/`` (their own pool)."""

_reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="media-read")


async def run_read(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking file reading for ``/v/`` on the read pool. The default pool also runs
    upload hashing and fsyncs, deletes and every catalog call (which may wait on the database
    lock for seconds); appliances' fills must not queue behind those."""
    return await asyncio.get_running_loop().run_in_executor(_reads, functools.partial(fn, *args))


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
        """Make ``staging`` the title ``video_id`` in one step unless a title is in place
        already (then ``staging`` is left alone); return the files of the title in place, in
        path order. ``FileNotFoundError`` if ``staging`` is gone and no title is in place."""
        ...

    async def remove_video(self, video_id: str) -> bool:
        """Remove the title's files; False if there were none."""
        ...

    async def remove_staging(self, video_id: str) -> int:
        """Remove the title's staging directories (built, or left by killed attempts);
        return how many there were."""
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
        return await asyncio.to_thread(self.publish_blocking, video_id, staging)

    async def remove_video(self, video_id: str) -> bool:
        _check_video_id(video_id)
        return await asyncio.to_thread(self.remove_video_blocking, video_id)

    async def remove_staging(self, video_id: str) -> int:
        _check_video_id(video_id)
        return await asyncio.to_thread(self.remove_staging_blocking, video_id)

    def _title_dir(self, video_id: str) -> Path:
        return self.root / "v" / video_id

    def publish_blocking(self, video_id: str, staging: Path) -> list[StoredFile]:
        """:meth:`publish` in the calling thread."""
        _check_video_id(video_id)
        if staging.resolve().parent != (self.root / STAGING).resolve():
            raise ValueError(f"{staging} is not a staging directory of {self.root}")
        target = self._title_dir(video_id)
        in_place = list_files(target, video_id)  # [] when absent (an empty one is no title)
        if in_place:
            return in_place  # published by an earlier or concurrent attempt
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _fsync_tree(staging)
            placed = rename_no_replace(staging, target)
        except FileNotFoundError:
            # Another attempt renamed the staging directory meanwhile (or it is gone).
            placed = False
        if placed:
            fsync_dir(target.parent)
        elif not target.exists():
            raise FileNotFoundError(
                errno.ENOENT, f"{staging.name} is gone and no title {video_id} is in place"
            )
        return list_files(target, video_id)

    def remove_video_blocking(self, video_id: str) -> bool:
        """:meth:`remove_video` in the calling thread."""
        _check_video_id(video_id)
        old = self._take_away(video_id)
        if old is None:
            return False
        shutil.rmtree(old, ignore_errors=True)
        return True

    def remove_staging_blocking(self, video_id: str) -> int:
        """:meth:`remove_staging` in the calling thread. Staging directories are named
        ``{video_id}.…`` (ids hold no dot, so no other title's match)."""
        _check_video_id(video_id)
        found = 0
        for path in (self.root / STAGING).glob(f"{video_id}.*"):
            found += 1
            shutil.rmtree(path, ignore_errors=True)
        return found

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
        return await run_read(self._stat_blocking, key)

    async def open(self, key: str) -> OpenObject | None:
        validate_key(key)
        return await run_read(self._open_blocking, key)

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


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` (Linux, glibc >= 2.28), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return cast(Callable[..., int], fn)


_RENAMEAT2 = _renameat2()


def rename_no_replace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists; True if renamed, False if ``dst`` was
    there (it is left as it is). ``FileNotFoundError`` if ``src`` is gone.

    ``renameat2(RENAME_NOREPLACE)`` decides in one step. Without it (another kernel, a file
    system that does not support the flag) ``os.rename`` refuses a non-empty ``dst`` directory
    and may only replace an empty one, which holds nothing to lose. An empty ``dst`` (no title
    is ever empty) is removed with ``rmdir``, which cannot remove anything else, and the
    rename tried again.
    """
    for _ in range(2):
        try:
            _rename_exclusive(src, dst)
            return True
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        try:
            os.rmdir(dst)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                return False
            if e.errno != errno.ENOENT:
                raise
    return False


def _rename_exclusive(src: Path, dst: Path) -> None:
    if _RENAMEAT2 is not None:
        rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if os.path.lexists(dst) and not os.path.isdir(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


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

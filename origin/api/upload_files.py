"""The files behind uploads: appending parts, hashing, moving the whole file to the sources.

Everything here blocks; the upload handlers call it through ``asyncio.to_thread``, one batched
hop per step (never per network chunk). Rules that keep a crash or a dropped connection safe:

- A part is written at the upload's ``received`` offset after cutting the file there, so bytes
  of an earlier part that were never recorded (a refused or interrupted one) cannot survive.
- Bytes are fsynced before the catalog records them: what ``received`` counts is on disk.
- Completion renames the file into ``{sources}/{video_id}/source`` (same file system, one
  step) and fsyncs both directories; a retried completion finds it there, moves it back and
  checks it again like the first time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from pathlib import Path

from origin.storage import fsync_dir

SOURCE_NAME = "source"
"""File name of an uploaded original below ``{sources}/{video_id}/``."""


class UploadDataLost(OSError):
    """The temp file holds fewer bytes than the catalog says were received."""


def source_path(sources: Path, video_id: str) -> Path:
    return sources / video_id / SOURCE_NAME


class PartFile:
    """An upload's temp file opened to append one part at ``offset`` (blocking calls)."""

    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self.start = offset
        self.written = 0

    @classmethod
    def open(cls, path: Path, offset: int) -> PartFile:
        """Open (creating the directory and file) and cut the file to ``offset`` bytes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            have = os.fstat(fd).st_size
            if have < offset:
                raise UploadDataLost(
                    errno.EIO, f"{path} holds {have} bytes, the catalog counts {offset}"
                )
            os.ftruncate(fd, offset)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, offset)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self.start + self.written)
            self.written += n
            view = view[n:]

    def sync(self) -> int:
        """Flush what was written to disk; return how many bytes that is."""
        os.fsync(self._fd)
        return self.written

    def discard(self) -> None:
        """Forget this part's bytes: cut the file back to where the part started."""
        os.ftruncate(self._fd, self.start)
        self.written = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sha256_file(path: Path) -> str:
    """Lowercase hex SHA-256 of the file's bytes."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def whole_file(temp: Path, dest: Path) -> Path:
    """A fully received upload, at ``temp``: a completion that moved it to ``dest`` and died
    before the catalog recorded it is undone first (nothing refers to ``dest`` until then), so
    that a checksum mismatch, which removes ``temp``, leaves no source behind.
    ``FileNotFoundError`` if the file is in neither place."""
    if temp.exists():
        return temp
    if dest.exists():
        temp.parent.mkdir(parents=True, exist_ok=True)
        os.rename(dest, temp)
        fsync_dir(temp.parent)
        with contextlib.suppress(OSError):
            dest.parent.rmdir()  # {sources}/{id}/ holds nothing else; move_into_place remakes it
        return temp
    raise FileNotFoundError(errno.ENOENT, "upload file is gone", str(temp))


def move_into_place(temp: Path, dest: Path) -> None:
    """Rename ``temp`` to ``dest`` (a no-op when an earlier call did it) and make it durable."""
    if not temp.exists() and dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(temp, dest)
    fsync_dir(dest.parent)
    fsync_dir(dest.parent.parent)
    fsync_dir(temp.parent)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_source(sources: Path, video_id: str) -> bool:
    """Remove ``{sources}/{video_id}``; False if it was not there."""
    directory = sources / video_id
    if not directory.exists():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True

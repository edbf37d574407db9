"""Writing state files so that a crash at any moment leaves the old file or the new one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file of its own (two writers of one path
    never share it), flushed to disk before it replaces ``path`` (blocking)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

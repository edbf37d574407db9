"""Access log: one JSON line per request on stdout, written in batches.

Lines are buffered and written at most every ``interval`` seconds or when the buffer passes
64 KiB, so the hot path pays for a format call, not a syscall.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Protocol


class _Req(Protocol):
    method: bytes
    start: float
    headers: dict[str, str]


class AccessLog:
    def __init__(self, worker: int, out: IO[bytes] | None = None, limit: int = 65536) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        self._buf: list[str] = []
        self._size = 0
        self._limit = limit
        self._worker = worker

    def log(self, req: _Req, peer: str, path: str, status: int, nbytes: int, outcome: str) -> None:
        now = time.time()
        line = json.dumps(
            {
                "ts": round(now, 3),
                "type": "access",
                "w": self._worker,
                "client": peer,
                "method": req.method.decode("latin-1"),
                "path": path,
                "status": status,
                "bytes": nbytes,
                "outcome": outcome,
                "ms": round((time.monotonic() - req.start) * 1000, 2),
                "range": req.headers.get("range"),
                "ua": req.headers.get("user-agent"),
            },
            separators=(",", ":"),
        )
        self._buf.append(line)
        self._size += len(line) + 1
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = ("\n".join(self._buf) + "\n").encode()
        self._buf.clear()
        self._size = 0
        try:
            self._out.write(data)
            self._out.flush()
        except (BrokenPipeError, ValueError):
            pass

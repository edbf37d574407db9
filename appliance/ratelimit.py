"""A byte-rate limit shared by processes: one prefill job's fills run on several workers.

The state is 16 bytes in a file under the run directory, ``(rate, tat)``, mapped by every
process that uses it and serialised with ``flock``. ``tat`` (theoretical arrival time, GCRA) is
on the system-wide ``CLOCK_MONOTONIC``, which every process on the box shares. A reader calls
:meth:`SharedRate.reserve` with the bytes it just received and sleeps for the delay it returns;
while it sleeps it does not read, so TCP flow control slows the sender: the cap holds on the
wire, not only in our accounting. Delays shorter than ``slack`` are not slept (they are paid
with the next reservation), so a fast link sleeps a few times a second rather than per packet.

Pure decision: :func:`gcra_reserve`; the file handling is the thin shell around it.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from pathlib import Path

_FMT = struct.Struct("=dd")


def gcra_reserve(rate: float, tat: float, now: float, nbytes: int) -> tuple[float, float]:
    """Account ``nbytes`` at ``rate`` bytes/s: returns (new tat, seconds the caller is ahead).

    A link idle for a while does not bank credit: the reservation starts at ``now`` at the
    earliest. ``rate <= 0`` means unlimited.
    """
    if rate <= 0:
        return now, 0.0
    new_tat = max(tat, now) + nbytes / rate
    return new_tat, new_tat - now


class SharedRate:
    """One rate limit in a file; cheap to open in every process that takes part."""

    def __init__(self, path: Path, slack: float = 0.05, create: bool = False) -> None:
        """Open the limit at ``path``; FileNotFoundError when it is gone (job ended) unless
        ``create``."""
        self.path = path
        self.slack = slack
        self._fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        if os.fstat(self._fd).st_size < _FMT.size:
            os.ftruncate(self._fd, _FMT.size)
        self._map = mmap.mmap(self._fd, _FMT.size)

    @classmethod
    def create(cls, path: Path, rate: float) -> SharedRate:
        path.parent.mkdir(parents=True, exist_ok=True)
        r = cls(path, create=True)
        r.set_rate(rate)
        return r

    def set_rate(self, rate: float) -> None:
        with self._locked():
            _rate, tat = _FMT.unpack_from(self._map)
            _FMT.pack_into(self._map, 0, float(rate), tat)

    @property
    def rate(self) -> float:
        return float(_FMT.unpack_from(self._map)[0])

    def reserve(self, nbytes: int) -> float:
        """Account ``nbytes``; returns the seconds to sleep before reading more (often 0)."""
        with self._locked():
            rate, tat = _FMT.unpack_from(self._map)
            new_tat, ahead = gcra_reserve(rate, tat, time.monotonic(), nbytes)
            _FMT.pack_into(self._map, 0, rate, new_tat)
        return ahead if ahead > self.slack else 0.0

    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class _Flock:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

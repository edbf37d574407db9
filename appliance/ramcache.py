"""A worker's RAM tier: copies of hot chunks whose checksum was verified when read from the SSD.

Why it exists: verifying a chunk's xxh3 on every hit reads each byte once more than sending it
does; at line rate that was a quarter of a worker's CPU at 2 MiB objects (docs/benchmarks.md).
The checksums guard against what the SSD (or a misdirected write) does to bytes at rest; a copy
in process memory, checked once when it was read from the disk, does not go through the SSD
again (RAM is covered by ECC, as the bytes of a fill in flight are). So a hit on a chunk in this
tier is served without hashing, and a chunk read from LMDB is hashed as before.

Entries are keyed by the chunk's LMDB key (object id + index). Object ids are random per fill, so
an entry can only be reached through the current meta record: a purge, an eviction or a refill
makes the old entries unreachable at once (they then age out of the LRU). No fan-out is needed.

Admission: a chunk is copied in on its second read from LMDB while its key is still in a
bounded history of keys read once (so a one-hit object cannot flush the hot set); eviction is
LRU. Each worker has its own tier (``storage.ram_cache_size`` split evenly): hot chunks are held
once per worker, the price of lock-free, copy-free serving from each process.

Pure bookkeeping, no I/O; driven from the hit path
(:meth:`appliance.store.ObjectView.read_verified`).
"""

from __future__ import annotations

from collections import OrderedDict

HISTORY_MIN = 1024
"""Keys remembered as read once, at least (more for a larger tier)."""


class RamCache:
    __slots__ = (
        "_entries",
        "_history",
        "_history_max",
        "admitted",
        "capacity",
        "evicted",
        "hits",
        "max_entry",
        "misses",
        "used",
    )

    def __init__(self, capacity: int, chunk_size: int = 2**20) -> None:
        self.capacity = max(0, capacity)
        self.max_entry = self.capacity // 8
        """Larger chunks are never admitted: one entry may not take over the tier."""
        self.used = 0
        self._entries: OrderedDict[bytes, memoryview] = OrderedDict()
        self._history: OrderedDict[bytes, None] = OrderedDict()
        self._history_max = max(HISTORY_MIN, 2 * self.capacity // max(1, chunk_size))
        self.hits = 0
        self.misses = 0
        self.admitted = 0
        self.evicted = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> memoryview | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def get_run(self, keys: tuple[bytes, ...]) -> list[memoryview] | None:
        """Every one of ``keys`` if all are here (each counted as a hit and made most recent),
        else None with nothing counted: the caller then goes chunk by chunk."""
        entries = self._entries
        out = []
        for k in keys:
            entry = entries.get(k)
            if entry is None:
                return None
            out.append(entry)
        touch = entries.move_to_end
        for k in keys:
            touch(k)
        self.hits += len(out)
        return out

    def offer(self, key: bytes, verified: memoryview | bytes) -> None:
        """A chunk was just read from LMDB and its checksum matched: maybe keep a copy."""
        size = len(verified)
        if size > self.max_entry or key in self._entries:
            return
        history = self._history
        if key not in history:
            history[key] = None
            if len(history) > self._history_max:
                history.popitem(last=False)
            return
        del history[key]
        self._entries[key] = memoryview(bytes(verified))
        self.used += size
        self.admitted += 1
        while self.used > self.capacity:
            _, old = self._entries.popitem(last=False)
            self.used -= len(old)
            self.evicted += 1

    def take_counts(self) -> tuple[int, int]:
        """(hits, misses) since the last call, for the metrics flush."""
        counts = self.hits, self.misses
        self.hits = self.misses = 0
        return counts

    def clear(self) -> None:
        self._entries.clear()
        self._history.clear()
        self.used = 0

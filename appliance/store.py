"""The object store: one LMDB environment per disk, objects spread over disks by xxhash.

Layout of one environment (named databases):

- ``meta``   cache key -> :class:`ObjectMeta` (msgpack): length, type, ETag, Last-Modified,
  Cache-Control, stored time, chunk size, one xxh3-64 checksum per chunk, object id.
- ``chunks`` object id (8 random bytes) + chunk index (u32 BE) -> body bytes (``chunk_size``
  each, the last one shorter). A Range read touches only the chunks it needs.
- ``stats``  cache key -> policy state (frequency, last access) so eviction survives restart.

Visibility: an object's chunks and its meta record are written in **one** write transaction, so
an object is visible only once complete and checksummed; ``kill -9`` at any moment leaves either
the whole object or nothing (LMDB transactions are atomic), and a restart never serves a partial
object. While a fill is in flight its bytes stream to waiters from memory (``appliance.fill``).

Threads: reads run in the event loop (a read transaction and a few ``get`` calls, ~2 us, zero
copy: chunk values are memoryviews into the map, measured in docs/architecture.md); every write
runs on the disk's single writer thread (LMDB has one writer per environment anyway).

Disk placement is rendezvous hashing over the healthy disks: when a disk fails, only its keys move.
A disk whose environment will not open, or that raises an LMDB error, is marked failed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import lmdb
import msgpack
import xxhash

from appliance.config import DiskConfig, StorageConfig
from appliance.ramcache import RamCache
from appliance.respond import ObjectFacts

log = logging.getLogger("appliance.store")
T = TypeVar("T")

_META_VERSION = 1
_CHUNK_KEY = struct.Struct(">8sI")


class StoreError(Exception):
    """Base of store errors."""


class DiskFailed(StoreError):
    """The disk holding a key is out of service."""


class StoreBusy(StoreError):
    """Every LMDB reader slot is taken (too many responses pinned at once): retry shortly.

    Not a disk fault: the disk stays in service."""


MAX_READERS = 4096
"""LMDB reader slots per environment, shared by all workers. Each hit holds one while its
response is being read; one that the socket did not take at once keeps it until the socket
drains (a slow client), which is why workers copy instead of pinning past a budget
(``Worker.pin_budget``). More slots would make every read transaction's slot scan longer."""


def checksum(data: bytes | memoryview) -> int:
    return xxhash.xxh3_64_intdigest(data)


@dataclass(frozen=True, slots=True)
class ObjectMeta(ObjectFacts):
    """A stored object's facts (what responses need) plus its layout on disk."""

    chunk_size: int
    checksums: tuple[int, ...]
    object_id: bytes

    def encode(self) -> bytes:
        return msgpack.packb(
            [
                _META_VERSION,
                self.length,
                self.content_type,
                self.etag,
                self.last_modified,
                self.cache_control,
                self.stored_at,
                self.chunk_size,
                list(self.checksums),
                self.object_id,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> ObjectMeta:
        v = msgpack.unpackb(raw)
        if not isinstance(v, list) or len(v) != 10 or v[0] != _META_VERSION:
            raise ValueError("unknown meta record format")
        return cls(v[1], v[2], v[3], v[4], v[5], v[6], v[7], tuple(v[8]), v[9])

    @property
    def nchunks(self) -> int:
        return len(self.checksums)


def chunk_key(object_id: bytes, index: int) -> bytes:
    return _CHUNK_KEY.pack(object_id, index)


def chunk_keys(object_id: bytes, first: int, stop: int) -> tuple[bytes, ...]:
    """The keys of chunks ``first .. stop - 1`` of an object."""
    return tuple(_CHUNK_KEY.pack(object_id, i) for i in range(first, stop))


Chunk = bytes | memoryview


def split_chunks(body: bytes, chunk_size: int) -> list[Chunk]:
    """``body`` in ``chunk_size`` pieces: views into it, not copies (a fill's object is in
    memory twice at commit already: the pieces its waiters read, and the joined body)."""
    if not body:
        return []
    view = memoryview(body)
    return [view[i : i + chunk_size] for i in range(0, len(body), chunk_size)]


class ObjectView:
    """A stored object pinned by an open read transaction (zero-copy chunk access).

    The transaction keeps the pages from being reused by writers, so memoryviews handed to the
    socket stay valid until :meth:`release`; the HTTP layer releases once the socket buffer has
    drained.
    """

    __slots__ = ("_chunks", "_keys", "_ram", "_txn", "disk", "key", "mapped", "meta")

    def __init__(
        self,
        disk: Disk,
        key: str,
        txn: Any,
        meta: ObjectMeta,
        ram: RamCache | None,
        chunk_keys: tuple[bytes, ...] | None,
    ) -> None:
        self.disk = disk
        self.key = key
        self.meta = meta
        self._txn = txn
        self._chunks = disk.chunks_db
        self._ram = ram
        """None when the RAM tier is off."""
        self._keys = chunk_keys
        """All chunk keys, or None for a large object (built per read, for the chunks read)."""
        self.mapped = False
        """True once a chunk handed out points into the map (the view must stay pinned
        until the socket has sent it); chunks from the RAM tier need no pin."""

    def read_verified(self, first: int, last: int, verify: bool) -> list[memoryview] | None:
        """Chunks ``first..last`` inclusive, or None if one is missing or fails its checksum.

        Chunks in the RAM tier were verified when they were read from the map and are not
        hashed again; a chunk read from the map is verified (when ``verify``) and offered to it.
        """
        sums = self.meta.checksums
        if last >= len(sums):
            return None  # a record whose length and chunk list disagree: refill it
        keys = self._keys
        if keys is not None:
            if first or last != len(keys) - 1:
                keys = keys[first : last + 1]
        else:
            keys = chunk_keys(self.meta.object_id, first, last + 1)
        ram = self._ram
        if ram is not None:
            whole = ram.get_run(keys)
            if whole is not None:
                return whole  # the hot case: every chunk in RAM, one call
        out = []
        txn, db = self._txn, self._chunks
        for i, key in enumerate(keys, first):
            if ram is not None:
                c = ram.get(key)
                if c is not None:
                    out.append(c)
                    continue
            c = txn.get(key, db=db)
            if c is None:
                return None
            self.mapped = True
            if verify:
                if xxhash.xxh3_64_intdigest(c) != sums[i]:
                    return None
                if ram is not None:
                    ram.offer(key, c)
            out.append(c)
        return out

    def release(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None


KNOWN_CHUNK_KEYS_MAX = 64
"""Chunk keys are kept per known key only for objects of at most this many chunks (segments):
~50 B each, they would make the table of known keys large for multi-GB single-file renditions,
which are read by Range a few chunks at a time anyway."""


class _Known:
    """What a hit needs about a key, kept between hits: where it lives, its meta record as
    stored (to validate against) and decoded, and its chunk keys (small objects)."""

    __slots__ = ("chunk_keys", "disk", "kb", "meta", "raw")

    def __init__(self, disk: Disk, kb: bytes, raw: bytes, meta: ObjectMeta) -> None:
        self.disk = disk
        self.kb = kb
        self.raw = raw
        self.meta = meta
        n = meta.nchunks
        self.chunk_keys = chunk_keys(meta.object_id, 0, n) if n <= KNOWN_CHUNK_KEYS_MAX else None


class Disk:
    """One configured disk: its LMDB environment, health and writer thread."""

    def __init__(
        self, index: int, cfg: DiskConfig, sync: bool, max_readers: int = MAX_READERS
    ) -> None:
        self.index = index
        self.max_readers = max_readers
        self.cfg = cfg
        self.path = cfg.path
        self.seed = xxhash.xxh64_intdigest(str(cfg.path).encode())
        self.env: Any = None
        self.meta_db: Any = None
        self.chunks_db: Any = None
        self.stats_db: Any = None
        self.failed: str | None = None
        self._sync = sync
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lmdb-w{index}")

    @property
    def healthy(self) -> bool:
        return self.failed is None

    def open(self) -> None:
        if self.cfg.require_mount and not os.path.ismount(self.path):
            self.fail("not a mount point (storage.disks.require_mount): is the disk mounted?")
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(
                str(self.path),
                map_size=int(self.cfg.size * 1.25) + 256 * 2**20,
                max_dbs=4,
                max_readers=self.max_readers,
                sync=self._sync,
                metasync=False,
                readahead=False,
                lock=True,
            )
            self.meta_db = self.env.open_db(b"meta")
            self.chunks_db = self.env.open_db(b"chunks")
            self.stats_db = self.env.open_db(b"stats")
        except (lmdb.Error, OSError) as e:
            self.fail(f"cannot open: {e}")

    def fail(self, reason: str) -> None:
        if self.failed is None:
            log.error("disk taken out of service", extra={"disk": str(self.path), "reason": reason})
        self.failed = reason

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work on this disk's writer thread; LMDB errors fail the disk."""
        if self.failed:
            raise DiskFailed(f"{self.path}: {self.failed}")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, fn, *args)
        except lmdb.MapFullError:
            raise StoreError(f"{self.path}: map full") from None
        except lmdb.ReadersFullError:
            raise StoreBusy(f"{self.path}: all LMDB reader slots taken") from None
        except lmdb.Error as e:
            self.fail(f"lmdb error: {e}")
            raise DiskFailed(f"{self.path}: {e}") from e

    # -- blocking helpers (writer thread) --------------------------------------------------

    def _put(self, key: bytes, meta: ObjectMeta, chunks: Sequence[Chunk]) -> None:
        with self.env.begin(write=True) as txn:
            old = txn.get(key, db=self.meta_db)
            if old is not None:
                self._delete_chunks(txn, old)
            for i, c in enumerate(chunks):
                txn.put(chunk_key(meta.object_id, i), c, db=self.chunks_db)
            txn.put(key, meta.encode(), db=self.meta_db)

    def _delete_chunks(self, txn: Any, raw_meta: bytes) -> None:
        try:
            old = ObjectMeta.decode(raw_meta)
        except (ValueError, TypeError, msgpack.UnpackException):
            return
        for i in range(old.nchunks):
            txn.delete(chunk_key(old.object_id, i), db=self.chunks_db)

    def _delete(self, keys: list[bytes], expect_id: bytes | None) -> int:
        removed = 0
        with self.env.begin(write=True) as txn:
            for key in keys:
                raw = txn.get(key, db=self.meta_db)
                if raw is None:
                    continue
                if expect_id is not None and ObjectMeta.decode(raw).object_id != expect_id:
                    continue  # replaced by a newer fill meanwhile
                self._delete_chunks(txn, bytes(raw))
                txn.delete(key, db=self.meta_db)
                txn.delete(key, db=self.stats_db)
                removed += 1
        return removed

    def _put_stats(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in items:
                if txn.get(key, db=self.meta_db) is not None:
                    txn.put(key, value, db=self.stats_db)

    def scan(self) -> Iterator[tuple[str, ObjectMeta, tuple[int, float] | None]]:
        """Every stored object with its persisted policy state (blocking; run in a thread)."""
        with self.env.begin(buffers=False) as txn:
            stats_cur = txn.cursor(db=self.stats_db)
            for k, raw in txn.cursor(db=self.meta_db):
                try:
                    meta = ObjectMeta.decode(raw)
                except (ValueError, TypeError, msgpack.UnpackException):
                    continue
                st_raw = stats_cur.get(k)
                state = None
                if st_raw is not None:
                    freq, last = msgpack.unpackb(st_raw)
                    state = (int(freq), float(last))
                yield k.decode(), meta, state

    def range(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, ObjectMeta]]:
        """Up to ``limit`` objects whose key starts with ``prefix`` and sorts after ``after``,
        in key order (blocking; run in a thread). Cost grows with ``limit``, not the store."""
        out: list[tuple[str, ObjectMeta]] = []
        if self.failed or limit <= 0:
            return out
        pfx = prefix.encode()
        start = max(pfx, after.encode() + b"\x00") if after is not None else pfx
        with self.env.begin(buffers=False) as txn:
            cur = txn.cursor(db=self.meta_db)
            if not cur.set_range(start):
                return out
            for k, raw in cur:
                if not k.startswith(pfx):
                    break
                try:
                    out.append((k.decode(), ObjectMeta.decode(raw)))
                except (ValueError, TypeError, msgpack.UnpackException):
                    continue
                if len(out) >= limit:
                    break
        return out

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (blocking; a cursor walk over that range only)."""
        pfx = prefix.encode()
        keys: list[str] = []
        if self.failed:
            return keys
        with self.env.begin(buffers=False) as txn:
            cur = txn.cursor(db=self.meta_db)
            if cur.set_range(pfx):
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(pfx):
                        break
                    keys.append(k.decode())
        return keys

    def used_bytes(self) -> int:
        """Bytes of the LMDB data file in use (pages), for status and metrics."""
        if self.env is None or self.failed:
            return 0
        info = self.env.info()
        stat = self.env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        if self.env is not None:
            self.env.close()


class Store:
    """All disks; placement, zero-copy reads in the loop, writes on writer threads."""

    def __init__(
        self,
        cfg: StorageConfig,
        meta_cache_size: int = 65536,
        ram_bytes: int = 0,
        max_readers: int = MAX_READERS,
    ) -> None:
        self.cfg = cfg
        self.ram = RamCache(ram_bytes, cfg.chunk_size)
        """Verified hot chunks in this process's memory (``storage.ram_cache_size`` / workers)."""
        self.disks = [Disk(i, d, cfg.sync, max_readers) for i, d in enumerate(cfg.disks)]
        self._ram = self.ram if self.ram.enabled else None
        # Per key: its disk (placement is fixed while that disk is healthy; a failed disk never
        # comes back in this process) and its decoded meta record, valid while the raw record
        # is byte-identical: a hit compares ~150 bytes instead of hashing the key for placement,
        # decoding msgpack and building the dataclass and the chunk keys.
        self._known: dict[str, _Known] = {}
        self._known_max = meta_cache_size

    def open(self) -> None:
        for d in self.disks:
            d.open()

    def close(self) -> None:
        for d in self.disks:
            d.close()

    def disk_for(self, key: str) -> Disk | None:
        kb = key.encode()
        best: Disk | None = None
        best_score = -1
        for d in self.disks:
            if d.failed is None:
                score = xxhash.xxh3_64_intdigest(kb, seed=d.seed)
                if score > best_score:
                    best, best_score = d, score
        return best

    def open_view(self, key: str) -> ObjectView | None:
        """Pin and return the stored object for ``key`` (in-loop read), or None on a miss.

        Raises :class:`StoreBusy` when no reader slot is free."""
        known = self._known.get(key)
        if known is not None and known.disk.failed is None:
            disk, kb = known.disk, known.kb
        else:
            placed = self.disk_for(key)
            if placed is None:
                return None
            disk, kb, known = placed, key.encode(), None
        try:
            txn = disk.env.begin(buffers=True)
            try:
                raw = txn.get(kb, db=disk.meta_db)
                if raw is None:
                    txn.abort()
                    return None
                if known is None or known.raw != raw:
                    known = _Known(disk, kb, bytes(raw), ObjectMeta.decode(raw))
                    if len(self._known) >= self._known_max:
                        self._known.clear()
                    self._known[key] = known
            except BaseException:
                txn.abort()
                raise
        except lmdb.ReadersFullError:
            raise StoreBusy(f"{disk.path}: all LMDB reader slots taken") from None
        except lmdb.Error as e:
            disk.fail(f"lmdb read error: {e}")
            return None
        except (ValueError, TypeError, msgpack.UnpackException):
            return None  # unreadable meta: treat as a miss; the refill replaces it
        return ObjectView(disk, key, txn, known.meta, self._ram, known.chunk_keys)

    async def put(self, key: str, meta: ObjectMeta, chunks: Sequence[Chunk]) -> Disk:
        disk = self.disk_for(key)
        if disk is None:
            raise DiskFailed("no healthy disk")
        await disk.run(disk._put, key.encode(), meta, chunks)
        return disk

    async def delete(self, disk: Disk, keys: Iterable[str], expect_id: bytes | None = None) -> int:
        return await disk.run(disk._delete, [k.encode() for k in keys], expect_id)

    async def contents(
        self, prefix: str, after: str | None, limit: int
    ) -> list[tuple[str, ObjectMeta, Disk]]:
        """The next ``limit`` objects under ``prefix`` after ``after``, merged over disks."""
        per_disk = await asyncio.gather(
            *(asyncio.to_thread(d.range, prefix, after, limit) for d in self.disks if d.healthy)
        )
        healthy = [d for d in self.disks if d.healthy]
        merged = heapq.merge(
            *([(k, meta, d) for k, meta in got] for got, d in zip(per_disk, healthy, strict=True)),
            key=lambda item: item[0],
        )
        return list(itertools.islice(merged, limit))

    async def put_stats(self, disk: Disk, items: list[tuple[str, tuple[int, float]]]) -> None:
        packed = [(k.encode(), msgpack.packb([f, last])) for k, (f, last) in items]
        await disk.run(disk._put_stats, packed)


def new_meta(
    body_chunks: Sequence[Chunk],
    length: int,
    content_type: str,
    etag: str,
    last_modified: float,
    cache_control: str,
    chunk_size: int,
    now: float | None = None,
) -> ObjectMeta:
    return ObjectMeta(
        length=length,
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
        cache_control=cache_control,
        stored_at=time.time() if now is None else now,
        chunk_size=chunk_size,
        checksums=tuple(checksum(c) for c in body_chunks),
        object_id=os.urandom(8),
    )

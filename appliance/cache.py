"""Cache management for the keys a worker owns: admission, storing fills, hits, eviction.

Every key has exactly one owner worker (:func:`owner_of`); only the owner fills, stores, evicts
and keeps policy state for it, so these decisions need no cross-process locking. Each owner
runs one :class:`~appliance.policy.CachePolicy` per disk with an equal share of that disk's byte
budget. Hits served by other workers reach the owner in batches (``appliance.peer``).

Eviction runs as a background task woken when a policy goes over budget; victims are deleted
in batches on the disk's writer thread, so serving never waits for it. Policy state is written
to the ``stats`` database every ``stats_interval`` seconds and read back at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

import xxhash

from appliance import metrics as m
from appliance.fill import CompletedBody
from appliance.policy import CachePolicy
from appliance.store import Disk, DiskFailed, Store, StoreError, new_meta, split_chunks
from appliance.titles import TitleIndex

log = logging.getLogger("appliance.cache")

_OWNER_SEED = 0x5EED_0F_0A11


def owner_of(key: str, nworkers: int) -> int:
    if nworkers <= 1:
        return 0
    return xxhash.xxh3_64_intdigest(key.encode(), seed=_OWNER_SEED) % nworkers


class CacheManager:
    def __init__(
        self,
        store: Store,
        worker_index: int,
        nworkers: int,
        chunk_size: int,
        stats_interval: float = 30.0,
        evict_batch: int = 256,
    ) -> None:
        self.store = store
        self.worker_index = worker_index
        self.nworkers = nworkers
        self.chunk_size = chunk_size
        self.stats_interval = stats_interval
        self.evict_batch = evict_batch
        self.policies: dict[int, CachePolicy] = {
            d.index: CachePolicy(max(1, d.cfg.size // nworkers)) for d in store.disks
        }
        self.titles = TitleIndex()
        for pol in self.policies.values():
            pol.listener = self.titles.change
        self._dirty: defaultdict[int, set[str]] = defaultdict(set)
        self._evict_wanted = asyncio.Event()

    def owns(self, key: str) -> bool:
        return owner_of(key, self.nworkers) == self.worker_index

    def _policy(self, key: str) -> tuple[Disk, CachePolicy] | None:
        disk = self.store.disk_for(key)
        if disk is None:
            return None
        return disk, self.policies[disk.index]

    # -- start-up ------------------------------------------------------------------------

    def restore_blocking(self) -> int:
        """Rebuild policy state from the disks (blocking; run before serving or in a thread)."""
        now = time.time()
        n = 0
        for disk in self.store.disks:
            if not disk.healthy:
                continue
            pol = self.policies[disk.index]
            try:
                for key, meta, state in disk.scan():
                    if not self.owns(key) or self.store.disk_for(key) is not disk:
                        continue
                    pol.restore(key, meta.length, state or (1, meta.stored_at), now)
                    n += 1
            except Exception as e:  # an unreadable environment takes the disk out
                disk.fail(f"scan failed: {e}")
                continue
            pol.settle_after_restore(now)
        self._evict_wanted.set()
        return n

    # -- fills and hits ------------------------------------------------------------------

    async def store_completed(self, c: CompletedBody) -> None:
        """The store callback of :class:`appliance.fill.Filler`."""
        found = self._policy(c.key)
        if found is None:
            m.FILLS_STORED.labels("no_disk").inc()
            return
        disk, pol = found
        now = time.time()
        size = len(c.body)
        if c.key in pol:  # a refill (checksum failure, purge race): account it afresh
            pol.on_remove(c.key)
        admitted = pol.admit(c.key, size, now)  # counts the miss even for a forced admit
        if not admitted and not (c.force_admit and size <= pol.capacity):
            m.FILLS_STORED.labels("not_admitted").inc()
            return
        chunks = split_chunks(c.body, self.chunk_size)
        f = c.facts
        meta = new_meta(
            chunks,
            size,
            f.content_type,
            f.etag,
            f.last_modified,
            f.cache_control,
            self.chunk_size,
            f.stored_at,
        )
        try:
            await self.store.put(c.key, meta, chunks)
        except (DiskFailed, StoreError) as e:
            m.STORE_ERRORS.labels(type(e).__name__).inc()
            m.FILLS_STORED.labels("store_error").inc()
            log.warning("store failed", extra={"key": c.key, "error": str(e)})
            self._evict_wanted.set()
            return
        if not c.still_wanted():
            # Purged while the commit was on the writer thread: the purge's own delete may
            # have run before the commit landed, so undo the commit here.
            await self.store.delete(disk, [c.key], expect_id=meta.object_id)
            m.FILLS_STORED.labels("purged").inc()
            return
        m.FILLS_STORED.labels("stored").inc()
        pol.on_insert(c.key, size, now)
        self._dirty[disk.index].add(c.key)
        if pol.used > pol.capacity:
            self._evict_wanted.set()

    def hit(self, key: str, count: int = 1) -> None:
        found = self._policy(key)
        if found is None:
            return
        disk, pol = found
        if key in pol:
            pol.on_hit(key, time.time(), count)
            self._dirty[disk.index].add(key)

    async def drop(self, disk: Disk, key: str, object_id: bytes | None = None) -> None:
        """Remove one object (checksum failure, purge)."""
        self.policies[disk.index].on_remove(key)
        try:
            await self.store.delete(disk, [key], expect_id=object_id)
        except (DiskFailed, StoreError) as e:
            log.warning("drop failed", extra={"key": key, "error": str(e)})

    async def purge(self, keys: list[str], prefixes: list[str]) -> tuple[int, int]:
        """Remove the owned objects named by ``keys`` or under ``prefixes``.

        Returns (objects, bytes). A prefix is a cursor walk over that key range on each disk,
        so the cost grows with what is purged, not with what is stored.
        """
        by_disk: defaultdict[int, list[str]] = defaultdict(list)
        for key in keys:
            if self.owns(key):
                disk = self.store.disk_for(key)
                if disk is not None:
                    by_disk[disk.index].append(key)
        for prefix in prefixes:
            for disk in self.store.disks:
                if disk.healthy:
                    found = await asyncio.to_thread(disk.keys_with_prefix, prefix)
                    by_disk[disk.index].extend(k for k in found if self.owns(k))
        objects = nbytes = 0
        for index, found_keys in by_disk.items():
            disk = self.store.disks[index]
            pol = self.policies[index]
            unique = sorted(set(found_keys))
            for key in unique:
                nbytes += pol.size_of(key)
                pol.on_remove(key)
            for i in range(0, len(unique), self.evict_batch):
                try:
                    objects += await self.store.delete(disk, unique[i : i + self.evict_batch])
                except (DiskFailed, StoreError) as e:
                    log.warning("purge failed", extra={"disk": str(disk.path), "error": str(e)})
                    break
        return objects, nbytes

    # -- background tasks ----------------------------------------------------------------

    async def evict_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._evict_wanted.wait(), timeout=5.0)
            self._evict_wanted.clear()
            await self.evict_once()

    async def evict_once(self) -> int:
        total = 0
        for disk in self.store.disks:
            if not disk.healthy:
                continue
            pol = self.policies[disk.index]
            if pol.used <= pol.capacity:
                continue
            sizes_before = pol.used
            victims = pol.evict(time.time())
            for i in range(0, len(victims), self.evict_batch):
                batch = victims[i : i + self.evict_batch]
                try:
                    await self.store.delete(disk, batch)
                except (DiskFailed, StoreError) as e:
                    log.warning("eviction failed", extra={"disk": str(disk.path), "error": str(e)})
                    break
                await asyncio.sleep(0)  # let serving run between batches
            freed = sizes_before - pol.used
            m.EVICTIONS.labels(str(disk.path)).inc(len(victims))
            m.EVICTED_BYTES.labels(str(disk.path)).inc(max(0, freed))
            total += len(victims)
        return total

    async def stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            await self.flush_stats()

    async def flush_stats(self) -> None:
        dirty, self._dirty = self._dirty, defaultdict(set)
        for disk_index, keys in dirty.items():
            disk = self.store.disks[disk_index]
            pol = self.policies[disk_index]
            items = [(k, pol.export_state(k)) for k in keys if k in pol]
            if not items or not disk.healthy:
                continue
            try:
                await self.store.put_stats(disk, items)
            except (DiskFailed, StoreError) as e:
                log.warning("stats flush failed", extra={"disk": str(disk.path), "error": str(e)})

    def object_bytes(self) -> dict[int, int]:
        return {i: p.used for i, p in self.policies.items()}

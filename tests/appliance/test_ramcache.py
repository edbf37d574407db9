"""The RAM tier of verified chunks: admission, LRU by bytes, and its place in front of real LMDB."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

import requests

from appliance.config import DiskConfig, StorageConfig
from appliance.ramcache import RamCache
from appliance.store import KNOWN_CHUNK_KEYS_MAX, Store, chunk_key, new_meta, split_chunks
from tests.support.appliance_proc import Upstream, run_appliance

MiB = 2**20


def test_a_chunk_is_admitted_on_its_second_read_only() -> None:
    ram = RamCache(64 * MiB)
    ram.offer(b"a", b"x" * 100)
    assert ram.get(b"a") is None and len(ram) == 0
    ram.offer(b"a", b"x" * 100)
    got = ram.get(b"a")
    assert got is not None and bytes(got) == b"x" * 100
    assert (ram.used, ram.admitted, ram.hits) == (100, 1, 1)


def test_the_copy_does_not_alias_the_offered_buffer() -> None:
    ram = RamCache(64 * MiB)
    buf = bytearray(b"abc")
    ram.offer(b"k", buf)
    ram.offer(b"k", buf)
    buf[0] = ord("z")
    got = ram.get(b"k")
    assert got is not None and bytes(got) == b"abc"


def test_eviction_is_lru_by_bytes_and_a_read_refreshes() -> None:
    ram = RamCache(64 * MiB)  # max entry 8 MiB
    for k in (b"a", b"b", b"c"):
        ram.offer(k, bytes(8 * MiB))
        ram.offer(k, bytes(8 * MiB))
    assert ram.get(b"a") is not None  # a is now the most recent
    for i in range(6):  # 6 more x 8 MiB: 72 MiB offered in all, over 64
        k = b"n%d" % i
        ram.offer(k, bytes(8 * MiB))
        ram.offer(k, bytes(8 * MiB))
    assert ram.used <= ram.capacity
    assert ram.get(b"b") is None  # least recently used went first
    assert ram.get(b"a") is not None
    assert ram.evicted == 1


def test_oversized_chunks_and_a_disabled_tier_admit_nothing() -> None:
    ram = RamCache(64 * MiB)
    big = bytes(8 * MiB + 1)
    ram.offer(b"big", big)
    ram.offer(b"big", big)
    assert ram.get(b"big") is None
    off = RamCache(0)
    off.offer(b"k", b"x")
    off.offer(b"k", b"x")
    assert not off.enabled and len(off) == 0


def test_one_hit_keys_are_forgotten_so_they_never_get_in() -> None:
    ram = RamCache(64 * MiB, chunk_size=MiB)  # history of max(1024, 128) keys
    ram.offer(b"once", b"x")
    for i in range(1024):
        ram.offer(b"%d" % i, b"y")  # a scan of one-hit chunks pushes it out of the history
    ram.offer(b"once", b"x")
    assert ram.get(b"once") is None


def _store(tmp: Path, chunk: int = MiB) -> Store:
    cfg = StorageConfig(disks=(DiskConfig(tmp / "d0", 256 * MiB),), chunk_size=chunk, sync=False)
    store = Store(cfg, ram_bytes=64 * MiB)
    store.open()
    return store


def _put(store: Store, key: str, body: bytes) -> None:
    chunks = split_chunks(body, MiB)
    meta = new_meta(chunks, len(body), "video/iso.segment", '"e"', 0.0, "public", MiB)
    asyncio.run(store.put(key, meta, chunks))


def _read(store: Store, key: str) -> tuple[bytes | None, bool]:
    v = store.open_view(key)
    assert v is not None
    try:
        got = v.read_verified(0, v.meta.nchunks - 1, True)
        return (None if got is None else b"".join(got)), v.mapped
    finally:
        v.release()


def _put_hot(store: Store, key: str, body: bytes) -> None:
    """Store ``body`` and read it twice: verified from the map, then copied into the RAM tier."""
    _put(store, key, body)
    _read(store, key)
    _read(store, key)


def _rot(store: Store, key: str, index: int) -> None:
    """Bit rot: change a stored chunk's bytes behind the checksum's back."""
    v = store.open_view(key)
    assert v is not None
    oid = v.meta.object_id
    v.release()
    disk = store.disks[0]
    with disk.env.begin(write=True) as txn:
        ck = chunk_key(oid, index)
        data = bytearray(txn.get(ck, db=disk.chunks_db))
        data[10] ^= 0xFF
        txn.put(ck, bytes(data), db=disk.chunks_db)


def test_hot_chunks_are_served_from_ram_after_being_verified_twice(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        key = "/v/t/r/seg-00001.m4s"
        body = os.urandom(2 * MiB + 5000)
        _put(store, key, body)
        assert _read(store, key) == (body, True)
        assert _read(store, key) == (body, True)  # second read: verified, copied in
        assert store.ram.admitted == 3
        hits = store.ram.hits
        assert _read(store, key) == (body, False)  # from RAM: no pin, no hash
        assert store.ram.hits == hits + 3
    finally:
        store.close()


def test_rot_under_a_ram_copy_is_never_served_and_is_caught_once_out_of_ram(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    try:
        key = "/v/t/r/seg-00002.m4s"
        body = os.urandom(2 * MiB)
        _put_hot(store, key, body)
        _rot(store, key, 1)
        assert _read(store, key) == (body, False)  # the verified copy, not the rotten disk
        store.ram.clear()
        assert _read(store, key) == (None, True)  # read from the disk again: caught
    finally:
        store.close()


def test_a_refill_makes_the_old_copies_unreachable(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        key = "/v/t/r/seg-00003.m4s"
        old, new = os.urandom(MiB + 1), os.urandom(MiB + 1)
        _put_hot(store, key, old)
        assert len(store.ram) == 2
        _put(store, key, new)  # a purge + refill, or a refill after a checksum failure
        assert _read(store, key) == (new, True)
    finally:
        store.close()


def test_the_daemon_serves_repeat_hits_from_ram_and_counts_them(
    tmp_path: Path, upstream: Upstream
) -> None:
    key = "/v/ram/r/seg-00001.m4s"
    body = os.urandom(2 * MiB + 17)
    upstream.put(key, body)
    with run_appliance(tmp_path / "app", [upstream.base_url], workers=1) as app:
        assert app.metric("vodedge_ram_cache_capacity_bytes") == 2**30  # the default, 1 worker
        s = requests.Session()
        first = s.get(app.base_url + key, timeout=15)
        assert first.content == body
        deadline = time.monotonic() + 5
        hits = 0
        while hits < 4:  # 2 reads from LMDB (verified, copied in), then from RAM
            r = s.get(app.base_url + key, timeout=15)
            assert r.content == body
            hits += r.headers["Cache-Status"] == "vodedge; hit"
            assert time.monotonic() < deadline
        r = s.get(app.base_url + key, headers={"Range": "bytes=1048570-1048600"}, timeout=15)
        assert r.status_code == 206 and r.content == body[1048570:1048601]
        deadline = time.monotonic() + 5
        while app.metric("vodedge_ram_cache_chunk_reads_total", source="ram") < 3 * 2 + 2:
            assert time.monotonic() < deadline, "RAM tier reads not counted"
            time.sleep(0.2)
        assert app.metric("vodedge_ram_cache_chunk_reads_total", source="disk") == 6
        assert app.metric("vodedge_ram_cache_bytes") == len(body)


def test_get_run_returns_every_chunk_or_none_and_counts_only_whole_runs() -> None:
    ram = RamCache(64 * MiB)
    for k in (b"a", b"b", b"c"):
        ram.offer(k, k * 10)
        ram.offer(k, k * 10)
    got = ram.get_run((b"a", b"b", b"c"))
    assert got is not None and [bytes(g) for g in got] == [b"a" * 10, b"b" * 10, b"c" * 10]
    assert (ram.hits, ram.misses) == (3, 0)
    assert ram.get_run((b"b", b"c", b"missing")) is None  # nothing returned, nothing counted
    assert (ram.hits, ram.misses) == (3, 0)
    ram.get_run((b"a",))  # a run read refreshes its chunks: "a" is now the most recent
    assert list(ram._entries) == [b"b", b"c", b"a"]  # LRU order, least recent first


def test_an_object_partly_in_ram_is_read_whole_from_both_tiers(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        key = "/v/t/r/seg-00004.m4s"
        body = os.urandom(3 * MiB)
        _put_hot(store, key, body)
        assert len(store.ram) == 3
        v = store.open_view(key)
        assert v is not None
        second = chunk_key(v.meta.object_id, 1)
        v.release()
        store.ram._entries.pop(second)  # as if the LRU had let just this one go
        assert _read(store, key) == (body, True)  # chunk 1 from the map, verified
    finally:
        store.close()


def test_a_key_whose_disk_fails_is_placed_again(tmp_path: Path) -> None:
    disks = tuple(DiskConfig(tmp_path / f"d{i}", 64 * MiB) for i in range(2))
    store = Store(StorageConfig(disks=disks, chunk_size=MiB, sync=False), ram_bytes=64 * MiB)
    store.open()
    try:
        key = "/v/t/r/seg-00005.m4s"
        body = os.urandom(MiB + 3)
        _put(store, key, body)
        holder = store.disk_for(key)
        assert holder is not None and _read(store, key) == (body, True)  # placement remembered
        holder.fail("test: I/O error")
        assert store.open_view(key) is None  # a miss on the other disk, not the failed one
        _put(store, key, body)  # the refill lands on the healthy disk
        assert store.disk_for(key) is not holder and _read(store, key) == (body, True)
    finally:
        store.close()


def test_a_large_object_keeps_no_chunk_keys_and_reads_ranges_from_both_tiers(
    tmp_path: Path,
) -> None:
    chunk = 4096
    store = _store(tmp_path, chunk)
    try:
        key = "/v/t/r/rendition.mp4"
        body = os.urandom((KNOWN_CHUNK_KEYS_MAX + 6) * chunk + 5)
        chunks = split_chunks(body, chunk)
        meta = new_meta(chunks, len(body), "video/mp4", '"e"', 0.0, "public", chunk)
        asyncio.run(store.put(key, meta, chunks))
        for _ in range(3):  # disk, disk (copied into RAM), then RAM
            v = store.open_view(key)
            assert v is not None and v._keys is None
            got = v.read_verified(10, 12, True)
            v.release()
            assert got is not None and b"".join(got) == body[10 * chunk : 13 * chunk]
        assert store.ram.admitted == 3 and store.ram.hits == 3
        assert _read(store, key)[0] == body
    finally:
        store.close()


def test_a_record_whose_chunks_do_not_cover_its_length_reads_as_none(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        key = "/v/t/r/seg-00006.m4s"
        body = os.urandom(MiB + 7)
        chunks = split_chunks(body, MiB)
        meta = new_meta(chunks, len(body), "video/iso.segment", '"e"', 0.0, "public", MiB)
        bad = dataclasses.replace(meta, length=3 * MiB)  # says 3 chunks, lists 2
        asyncio.run(store.put(key, bad, chunks))
        v = store.open_view(key)
        assert v is not None
        assert v.read_verified(2, 2, True) is None  # dropped and refilled by the caller
        v.release()
    finally:
        store.close()

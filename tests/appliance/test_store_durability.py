"""Store integrity: kill -9 mid-fill, bit rot, eviction under a small budget, a failed disk."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import lmdb
import msgpack
import pytest
import requests
import xxhash

from appliance.store import ObjectMeta, chunk_key
from tests.support.appliance_proc import (
    Appliance,
    Upstream,
    appliance_toml,
    kill_tree,
    run_appliance,
    start_appliance,
)
from tests.support.procs import free_port


def get(app: Appliance, key: str, **kw: str) -> requests.Response:
    return requests.get(app.base_url + key, headers=kw, timeout=15)


def stored_objects(disk: Path) -> dict[str, ObjectMeta]:
    """Open the LMDB environment directly and check every object is whole and checksummed."""
    env = lmdb.open(str(disk), max_dbs=4, readonly=True, lock=False)
    try:
        meta_db = env.open_db(b"meta", create=False)
        chunks_db = env.open_db(b"chunks", create=False)
        out = {}
        with env.begin() as txn:
            for k, raw in txn.cursor(db=meta_db):
                meta = ObjectMeta.decode(raw)
                total = 0
                for i, want in enumerate(meta.checksums):
                    c = txn.get(chunk_key(meta.object_id, i), db=chunks_db)
                    assert c is not None, f"{k!r}: chunk {i} missing"
                    assert xxhash.xxh3_64_intdigest(c) == want, f"{k!r}: chunk {i} corrupt"
                    total += len(c)
                assert total == meta.length, f"{k!r}: {total} != {meta.length}"
                out[k.decode()] = meta
        return out
    finally:
        env.close()


async def _start_fills(base: str, keys: list[str], cancel_after: float) -> None:
    async with aiohttp.ClientSession() as s:

        async def one(k: str) -> None:
            try:
                async with s.get(base + k) as r:
                    await r.read()
            except aiohttp.ClientError:
                pass

        tasks = [asyncio.create_task(one(k)) for k in keys]
        await asyncio.sleep(cancel_after)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("kill_at", [0.3, 0.9, 1.6])
def test_kill9_during_fills_restart_serves_no_partial_object(
    tmp_path: Path, upstream: Upstream, kill_at: float
) -> None:
    keys = [f"/v/kill{int(kill_at * 10)}/r/seg-{i:05d}.m4s" for i in range(12)]
    bodies = {k: os.urandom(1_500_000 + i * 100_000) for i, k in enumerate(keys)}
    for k, b in bodies.items():
        upstream.put(k, b)
        # slow fills: ~24-40 pieces x 50 ms, so the kill lands mid-body for most
        upstream.fault(k, "trickle", 50)
    var = tmp_path / "app"
    port = free_port()
    var.mkdir()
    cfg = var / "appliance.toml"
    cfg.write_text(appliance_toml(var, port, [upstream.base_url], workers=2))
    app = start_appliance(cfg, var, port, 2)

    async def scenario() -> None:
        fills = asyncio.create_task(_start_fills(app.base_url, keys, 5.0))
        await asyncio.sleep(kill_at)
        kill_tree(app)
        await fills

    asyncio.run(scenario())
    whole = stored_objects(var / "disk0")  # raises on any partial or corrupt object
    for k, meta in whole.items():
        assert meta.length == len(bodies[k])
    for k in keys:
        upstream.fault(k, "none")
    app2 = start_appliance(cfg, var, port, 2)
    try:
        for k in keys:
            r = get(app2, k)
            assert r.status_code == 200 and r.content == bodies[k], k
            if k in whole:
                assert r.headers["Cache-Status"] == "vodedge; hit"
    finally:
        app2.proc.stop()


def _flip_byte_in_file(path: Path, needle: bytes) -> None:
    data = path.read_bytes()
    at = data.find(needle)
    assert at >= 0, "object bytes not found in data.mdb"
    with path.open("r+b") as f:
        f.seek(at + 10)
        b = f.read(1)
        f.seek(at + 10)
        f.write(bytes([b[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())


def test_flipped_byte_is_detected_refetched_never_served(
    tmp_path: Path, upstream: Upstream
) -> None:
    key = "/v/rot/r/seg-00001.m4s"
    body = os.urandom(2_500_000)
    upstream.put(key, body)
    with run_appliance(tmp_path / "app", [upstream.base_url], workers=2) as app:
        assert get(app, key).content == body
        deadline = time.monotonic() + 5
        while get(app, key).headers["Cache-Status"] != "vodedge; hit":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # corrupt the second chunk on disk
        _flip_byte_in_file(tmp_path / "app" / "disk0" / "data.mdb", body[2**20 : 2**20 + 64])
        for rng in (None, "bytes=1048576-1048700"):
            r = get(app, key, **({"Range": rng} if rng else {}))
            want = body if rng is None else body[1048576:1048701]
            assert r.content == want
        assert app.metric("vodedge_checksum_failures_total") >= 1
        assert upstream.count(key) >= 2
        deadline = time.monotonic() + 5
        while get(app, key).headers["Cache-Status"] != "vodedge; hit":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get(app, key).content == body


def test_eviction_keeps_use_under_budget_and_keeps_serving(
    tmp_path: Path, upstream: Upstream
) -> None:
    budget = 16 * 2**20
    old = {f"/v/evict/old/seg-{i:05d}.m4s": os.urandom(1_000_000) for i in range(20)}
    new = {f"/v/evict/new/seg-{i:05d}.m4s": os.urandom(1_000_000) for i in range(12)}
    for k, b in {**old, **new}.items():
        upstream.put(k, b)
    with run_appliance(
        tmp_path / "app",
        [upstream.base_url],
        workers=1,
        disks=[(str(tmp_path / "app" / "disk0"), "16MiB")],
    ) as app:
        for _ in range(2):  # fill the disk with the old title
            for k, b in old.items():
                r = get(app, k)
                assert r.status_code == 200 and r.content == b
        for round_no in range(6):  # a new title becomes popular: it must displace the old one
            for k, b in new.items():
                r = get(app, k)
                assert r.status_code == 200 and r.content == b
            if round_no < 5:
                # Players fetch a title's segments seconds apart, and hits reach the policy in
                # once-a-second batches: 72 requests in half a second let eviction see the new
                # title's misses but not yet its hits (CI once ended with 3 of 12 not stored).
                time.sleep(1.1)
        deadline = time.monotonic() + 10
        while app.metric("vodedge_disk_object_bytes") > budget:
            assert time.monotonic() < deadline, "eviction did not bring use under budget"
            time.sleep(0.2)
        assert app.metric("vodedge_evictions_total") > 0
        assert 0 < app.metric("vodedge_disk_object_bytes") <= budget
        hits = sum(get(app, k).headers["Cache-Status"] == "vodedge; hit" for k in new)
        assert hits >= len(new) - 2
    objects = stored_objects(tmp_path / "app" / "disk0")
    assert sum(m.length for m in objects.values()) <= budget
    assert (tmp_path / "app" / "disk0" / "data.mdb").stat().st_size < 3 * budget


def test_failed_disk_is_isolated(tmp_path: Path, upstream: Upstream) -> None:
    bad = tmp_path / "bad-disk"
    bad.write_text("not a directory")  # the environment cannot be opened
    good = tmp_path / "good-disk"
    keys = {f"/v/disk/r/seg-{i:05d}.m4s": os.urandom(200_000) for i in range(10)}
    for k, b in keys.items():
        upstream.put(k, b)
    with run_appliance(
        tmp_path / "app",
        [upstream.base_url],
        workers=2,
        disks=[(str(bad), "64MiB"), (str(good), "64MiB")],
    ) as app:
        assert get(app, "/healthz").status_code == 200
        for k, b in keys.items():
            assert get(app, k).content == b
        time.sleep(1.5)  # metrics are folded once a second
        assert app.metric("vodedge_disk_up", disk=str(bad)) == 0
        assert app.metric("vodedge_disk_up", disk=str(good)) == 1
        deadline = time.monotonic() + 5
        for k, b in keys.items():
            while (r := get(app, k)).headers["Cache-Status"] != "vodedge; hit":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert r.content == b
    assert len(stored_objects(good)) == len(keys)


def test_stats_survive_restart(tmp_path: Path, upstream: Upstream) -> None:
    """Eviction state is persisted: popularity counts are back after a restart."""
    key = "/v/stats/r/seg-00001.m4s"
    upstream.put(key, os.urandom(10_000))
    var = tmp_path / "app"
    with run_appliance(var, [upstream.base_url], workers=1) as app:
        for _ in range(20):
            get(app, key)
        time.sleep(0.3)
    # a graceful stop flushes policy state
    env = lmdb.open(str(var / "disk0"), max_dbs=4, readonly=True, lock=False)
    try:
        stats_db = env.open_db(b"stats", create=False)
        with env.begin() as txn:
            raw = txn.get(key.encode(), db=stats_db)
    finally:
        env.close()
    assert raw is not None
    freq, _last = msgpack.unpackb(raw)
    assert freq >= 2

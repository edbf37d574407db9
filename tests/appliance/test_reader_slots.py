"""LMDB reader slots: running out makes hits wait (503) or copy, never takes a disk out of service.

A hit holds a read transaction (one reader slot, shared by all workers) until its socket has
taken the bytes; slow clients can hold thousands. These tests drive a real Worker's protocol
over real LMDB; the transports are fakes only to force the fault (a socket that never drains).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from appliance.config import DiskConfig, StorageConfig, from_raw
from appliance.http import HttpProtocol
from appliance.store import Store, StoreBusy, new_meta, split_chunks
from appliance.worker import Worker

MiB = 2**20


class StuckTransport:
    """A client that reads nothing: every byte stays in the transport's buffer."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, pieces: list[Any]) -> None:
        self.out.extend(bytes(p) for p in pieces)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.out))

    def close(self) -> None:
        self.closed = True

    def body(self) -> bytes:
        return b"".join(self.out).partition(b"\r\n\r\n")[2]


async def _put(store: Store, key: str, body: bytes) -> None:
    chunks = split_chunks(body, MiB)
    await store.put(
        key, new_meta(chunks, len(body), "video/iso.segment", '"e"', 0.0, "x", MiB), chunks
    )


def _storage(tmp: Path) -> StorageConfig:
    return StorageConfig(disks=(DiskConfig(tmp / "d0", 64 * MiB),), chunk_size=MiB, sync=False)


async def test_no_free_reader_slot_is_busy_not_a_disk_failure(tmp_path: Path) -> None:
    store = Store(_storage(tmp_path), max_readers=4)
    store.open()
    try:
        await _put(store, "/v/a/r/seg-00001.m4s", os.urandom(1000))
        views = []
        with pytest.raises(StoreBusy):
            for _ in range(10):
                v = store.open_view("/v/a/r/seg-00001.m4s")
                assert v is not None
                views.append(v)
        assert 1 <= len(views) < 10
        assert store.disks[0].healthy
        for v in views:
            v.release()
        again = store.open_view("/v/a/r/seg-00001.m4s")  # slots are back
        assert again is not None
        again.release()
    finally:
        store.close()


def _worker(tmp: Path) -> Worker:
    raw = {
        "server": {"listen": ["127.0.0.1:1"], "workers": 1, "access_log": False},
        "admin": {"listen": "127.0.0.1:0", "token": "t" * 32},
        "fill": {"origins": ["http://127.0.0.1:9"]},
        "storage": {
            "disks": [{"path": str(tmp / "d0"), "size": "64MiB"}],
            "sync": False,
            "ram_cache_size": 0,  # every hit reads the map, so every stuck hit wants a pin
        },
    }
    w = Worker(from_raw(raw, tmp), 0, 1, [], os.getpid())
    w.store.open()
    return w


def _get(w: Worker, key: str) -> tuple[HttpProtocol, StuckTransport]:
    p, t = HttpProtocol(w), StuckTransport()
    p.connection_made(t)  # type: ignore[arg-type]
    p.data_received(f"GET {key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return p, t


async def test_past_the_pin_budget_stuck_hits_copy_instead_of_pinning(tmp_path: Path) -> None:
    w = _worker(tmp_path)
    try:
        key, body = "/v/b/r/seg-00001.m4s", os.urandom(2 * MiB + 3)
        await _put(w.store, key, body)
        w.pin_budget = 2
        conns = [_get(w, key) for _ in range(5)]
        assert w.pins == 2  # the first two pinned; the other three copied
        for _, t in conns:
            assert t.body() == body
        assert [p.busy for p, _ in conns] == [True, True, False, False, False]
        for p, _ in conns:
            p.connection_lost(None)
        assert w.pins == 0
    finally:
        w.store.close()

"""Single flight across worker processes: one upstream request however many players ask."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.appliance_proc import Appliance, Upstream, run_appliance


@pytest.fixture(scope="module")
def app(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    with run_appliance(module_tmp / "app", [upstream.base_url], workers=3) as a:
        yield a


async def _fetch_all(
    url: str, n: int, headers: dict[str, str] | None = None
) -> list[tuple[int, bytes, str, float]]:
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one() -> tuple[int, bytes, str, float]:
            t0 = time.monotonic()
            async with s.get(url, headers=headers or {}) as r:
                first = await r.content.read(1)
                ttfb = time.monotonic() - t0
                rest = await r.read()
                return r.status, first + rest, r.headers.get("Cache-Status", ""), ttfb

        return await asyncio.gather(*(one() for _ in range(n)))


def test_200_concurrent_cold_requests_one_upstream_fetch(
    app: Appliance, upstream: Upstream
) -> None:
    key = "/v/sf/h264-720p/seg-00001.m4s"
    body = os.urandom(5 * 2**20 + 7)
    upstream.put(key, body)
    upstream.fault(key, "delay", 300)
    results = asyncio.run(_fetch_all(app.base_url + key, 200))
    assert upstream.count(key) == 1
    assert all(s == 200 for s, _, _, _ in results)
    assert all(b == body for _, b, _, _ in results)
    statuses = [cs for _, _, cs, _ in results]
    kinds = Counter(cs for cs in statuses)
    # exactly one request led the fill; the others joined it or came after the commit
    assert kinds["vodedge; fwd=miss; stored"] == 1, kinds
    assert kinds["vodedge; fwd=miss; collapsed"] >= 50, kinds
    assert kinds["vodedge; fwd=miss; collapsed"] + kinds["vodedge; hit"] == 199, kinds


def test_waiters_get_bytes_while_the_fill_streams(app: Appliance, upstream: Upstream) -> None:
    key = "/v/sf/h264-720p/seg-00002.m4s"
    body = os.urandom(4 * 2**20)
    upstream.put(key, body)
    upstream.fault(key, "trickle", 20)  # 64 pieces x 20 ms: the fill takes >= 1.3 s
    t0 = time.monotonic()
    results = asyncio.run(_fetch_all(app.base_url + key, 30))
    total = time.monotonic() - t0
    assert upstream.count(key) == 1
    assert all(b == body for _, b, _, _ in results)
    ttfbs = sorted(t for *_, t in results)
    # every waiter had its first byte long before the fill finished
    assert ttfbs[-1] < total / 2, (ttfbs[-1], total)


def test_concurrent_range_requests_on_cold_object(app: Appliance, upstream: Upstream) -> None:
    key = "/v/sf/h264-720p/seg-00003.m4s"
    body = os.urandom(3 * 2**20)
    upstream.put(key, body)
    upstream.fault(key, "delay", 200)
    results = asyncio.run(_fetch_all(app.base_url + key, 60, {"Range": "bytes=2000000-2000099"}))
    assert upstream.count(key) == 1
    assert all(s == 206 and b == body[2000000:2000100] for s, b, _, _ in results)

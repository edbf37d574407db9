"""The fan-out order of a fill to its waiters (appliance.missstream), on a recording transport.

The end-to-end behaviour (bytes, statuses, one upstream fetch) is covered through real worker
processes in test_single_flight.py; what is pinned down here is the order in which waiters get
their bytes, which a loopback client cannot observe reliably.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

from appliance.fill import Fill
from appliance.http import Request
from appliance.missstream import TURN_BYTES, MissStream
from appliance.respond import NO_CONDITIONS, Conditions, ObjectFacts


class _Transport:
    def __init__(self, log: list[tuple[int, int]], ident: int) -> None:
        self.log = log
        self.ident = ident
        self.received = bytearray()

    def write(self, data: Any) -> None:
        self.log.append((self.ident, len(data)))
        self.received += bytes(data)

    def writelines(self, parts: list[Any]) -> None:
        head, body = parts
        assert bytes(head).startswith(b"HTTP/1.1 ")
        self.log.append((self.ident, len(body)))
        self.received += bytes(body)


class _Proto:
    """What a MissStream uses of HttpProtocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: _Transport) -> None:
        self.loop = loop
        self.transport = transport
        self.write_paused = False
        self.stream: MissStream | None = None
        self.w = SimpleNamespace(cfg=SimpleNamespace(server=SimpleNamespace(cors_allow_origin="*")))
        self.ended: list[str] = []

    def wants_gzip(self, *_: Any) -> bool:
        return False

    def write(self, data: bytes) -> None:
        raise AssertionError("the head goes out with the first body bytes")

    def miss_done(self, stream: MissStream) -> None:
        self.ended.append("done")

    def miss_failed(self, stream: MissStream, status: int, body: bytes) -> None:
        self.ended.append(f"failed {status}")

    def miss_aborted(self, stream: MissStream) -> None:
        self.ended.append("aborted")


def _streams(
    n: int, cond: Conditions = NO_CONDITIONS
) -> tuple[Fill, list[_Proto], list[tuple[int, int]]]:
    loop = asyncio.get_running_loop()
    fill = Fill("/v/t/r/seg-00001.m4s")
    log: list[tuple[int, int]] = []
    protos = []
    for i in range(n):
        proto = _Proto(loop, _Transport(log, i))
        req = Request(b"GET", b"/v/t/r/seg-00001.m4s", {}, True)
        proto.stream = MissStream(proto, req, fill.key, cond, fill, i > 0)  # type: ignore[arg-type]
        proto.stream.start()
        protos.append(proto)
    return fill, protos, log


async def _drain() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


def _facts(n: int) -> ObjectFacts:
    return ObjectFacts(n, "video/mp4", '"e1"', 1.0e9, "public", 1.0e9)


def test_waiters_take_turns_so_all_get_first_bytes_before_anyone_gets_more() -> None:
    async def run() -> None:
        body = os.urandom(2**20 + 5)
        fill, protos, log = _streams(5)
        fill.set_head(_facts(len(body)))
        assert log == []  # no head alone: it waits for body bytes
        fill.append(body)  # the whole object arrives in one piece
        fill.finish()
        await _drain()
        first_round = [ident for ident, _ in log[:5]]
        assert sorted(first_round) == [0, 1, 2, 3, 4], log[:10]
        assert all(size == TURN_BYTES < len(body) // 4 for _, size in log[:5])
        for p in protos:
            assert bytes(p.transport.received) == body
            assert p.ended == ["done"]

    asyncio.run(run())


def test_a_paused_waiter_catches_up_from_its_own_offset() -> None:
    async def run() -> None:
        body = os.urandom(3 * TURN_BYTES)
        fill, protos, _ = _streams(2)
        slow = protos[1]
        slow.write_paused = True
        fill.set_head(_facts(len(body)))
        fill.append(body[:TURN_BYTES])
        fill.append(body[TURN_BYTES:])
        fill.finish()
        await _drain()
        assert bytes(protos[0].transport.received) == body
        assert slow.transport.received == b"" and slow.ended == []
        slow.write_paused = False
        assert slow.stream is not None
        slow.stream.pump()  # what HttpProtocol.resume_writing does
        await _drain()
        assert bytes(slow.transport.received) == body and slow.ended == ["done"]

    asyncio.run(run())


def test_range_waiter_gets_only_its_slice_and_a_failure_before_it_is_a_plain_error() -> None:
    async def run() -> None:
        body = os.urandom(2 * TURN_BYTES)
        fill, protos, _ = _streams(
            1, Conditions(range=f"bytes={TURN_BYTES + 10}-{TURN_BYTES + 19}")
        )
        fill.set_head(_facts(len(body)))
        fill.append(body[:TURN_BYTES])
        await _drain()
        assert protos[0].transport.received == b""
        fill.append(body[TURN_BYTES:])
        await _drain()
        assert bytes(protos[0].transport.received) == body[TURN_BYTES + 10 : TURN_BYTES + 20]
        assert protos[0].ended == ["done"]

        fill2, protos2, log2 = _streams(1, Conditions(range="bytes=100-199"))
        fill2.set_head(_facts(1000))
        fill2.append(b"x" * 50)  # not yet at byte 100 when the fill breaks
        fill2.finish(None)
        await _drain()
        assert log2 == [] and protos2[0].ended == ["failed 502"]

    asyncio.run(run())

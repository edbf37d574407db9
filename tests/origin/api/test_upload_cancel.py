"""A shutdown that cancels an upload part while a write runs in its thread waits for the write
(the part is then synced and closed; closing under a running write could count bytes that were
never synced, or write into a reused descriptor)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import StreamReader

from origin.api.upload_files import PartFile
from origin.api.uploads import WRITE_CHUNK, receive


async def test_cancel_waits_for_the_write_in_flight(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    content = StreamReader(mock.Mock(), limit=2**16, loop=loop)  # no socket behind it
    content.feed_data(b"x" * WRITE_CHUNK)  # one full chunk: written while more is awaited
    part = PartFile.open(tmp_path / "u.part", 0)
    started, finished = threading.Event(), threading.Event()
    real_write = part.write

    def slow_write(data: bytes | bytearray | memoryview) -> None:  # forces the race
        started.set()
        threading.Event().wait(0.3)
        real_write(data)
        finished.set()

    with mock.patch.object(part, "write", slow_write):
        task = asyncio.create_task(receive(content, part, 4 * WRITE_CHUNK, idle_s=30))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancellation came back only after the write had ended.
        assert finished.is_set()
    assert part.sync() == WRITE_CHUNK
    part.discard()

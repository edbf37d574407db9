"""A real origin on disk for the pipeline tests: config file, SQLite catalog, media root, work
dir, tiny generated clips, worker subprocesses and a loopback webhook receiver.

Clips are 2-4 s at 640x360 or less and the encodes use the ultrafast preset with 2 s chunks,
so one title goes from upload to READY in about two seconds on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from origin import config as origin_config
from origin.catalog import Job, SqliteCatalog, Video
from origin.config import OriginConfig
from origin.media.tools import Tools, find_tools
from origin.pipeline.start import first_jobs
from tests.origin.media.conftest import make_clip

REPO = Path(__file__).resolve().parents[3]
WEBHOOK_TOKEN = "hook-token-0123456789"
SUBTITLES_SRT = """1
00:00:00,500 --> 00:00:01,500
Hello

2
00:00:02,000 --> 00:00:03,000
World
"""


@pytest.fixture(scope="session")
def tools() -> Tools:
    return find_tools()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline-clips")


def make_title_clip(tools: Tools, out: Path, *, size: str, seconds: float) -> Path:
    """Test pattern + sine (tagged French) + an English SubRip track, in Matroska."""
    srt = out.with_suffix(".srt")
    srt.write_text(SUBTITLES_SRT)
    argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds + 0.3}"]
    argv += ["-i", str(srt), "-map", "0", "-map", "1", "-map", "2"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "37", "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-b:a", "64k", "-c:s", "srt"]
    argv += ["-metadata:s:a:0", "language=fre", "-metadata:s:s:0", "language=eng"]
    subprocess.run([*argv, str(out)], check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="session")
def title_clip(tools: Tools, clip_dir: Path) -> Path:
    """640x360, 4 s: two rungs (240p, 360p) x two 2 s chunks, audio, subtitles."""
    return make_title_clip(tools, clip_dir / "title.mkv", size="640x360", seconds=4.0)


@pytest.fixture(scope="session")
def bad_uploads(tools: Tools, clip_dir: Path) -> dict[str, Path]:
    text = clip_dir / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    whole = make_clip(tools, clip_dir / "whole.mp4", seconds=3.0, audio_seconds=3.0)
    truncated = clip_dir / "truncated.mp4"  # the index (moov) is at the end: cut off
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    voice = make_clip(tools, clip_dir / "voice.m4a", size="", audio_seconds=2.0)
    return {"text": text, "truncated": truncated, "audio_only": voice}


@dataclass
class Origin:
    """One origin's files under a temporary directory, and its config."""

    root: Path
    config_path: Path
    cfg: OriginConfig

    def catalog(self) -> SqliteCatalog:
        return SqliteCatalog.open(self.cfg.catalog.path)

    def add_video(self, source: Path, title: str = "A title") -> str:
        """What the upload API does once a source is in place."""
        with self.catalog() as catalog:
            video = catalog.create_video(title, source_path=str(source))
            catalog.enqueue_many(video.video_id, first_jobs(self.cfg.pipeline.max_attempts))
            return video.video_id

    def video(self, video_id: str) -> Video:
        with self.catalog() as catalog:
            return catalog.get_video(video_id)

    def jobs(self, video_id: str) -> list[Job]:
        with self.catalog() as catalog:
            return catalog.list_jobs(video_id)

    def title_dir(self, video_id: str) -> Path:
        return self.cfg.media.root / "v" / video_id

    def worker_argv(self, *, once: bool = True) -> list[str]:
        argv = [sys.executable, "-m", "origin.pipeline.worker", "-c", str(self.config_path)]
        return [*argv, "--once"] if once else argv

    def run_worker(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """One worker with ``--once``: runs until the queue has nothing left."""
        return subprocess.run(
            self.worker_argv(), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )

    def start_worker(self, *, once: bool = True) -> subprocess.Popen[str]:
        """A worker in its own process group (so a test can kill it with its tools)."""
        return subprocess.Popen(
            self.worker_argv(once=once),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


def make_origin(root: Path, *, webhook_url: str | None = None, **pipeline: object) -> Origin:
    settings: dict[str, object] = {
        "work_dir": str(root / "work"),
        "lease_s": 3.0,
        "max_attempts": 3,
        "retry_base_s": 0.2,
        "retry_max_s": 1.0,
        "poll_s": 0.05,
        "preset": "ultrafast",
        "chunk_seconds": 2,
    } | pipeline
    lines = [
        "[log]",
        'level = "debug"',
        "[catalog]",
        f'path = "{root / "catalog.db"}"',
        "[media]",
        f'root = "{root / "media"}"',
        f'sources = "{root / "sources"}"',
        "[pipeline]",
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
    ]
    if webhook_url is not None:
        lines += ["[webhook]", f'url = "{webhook_url}"', f'token = "{WEBHOOK_TOKEN}"']
        lines += ["timeout_s = 2.0", "attempts = 2"]
    config_path = root / "origin.toml"
    config_path.write_text("\n".join(lines) + "\n")
    return Origin(root, config_path, origin_config.load(config_path))


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return make_origin(tmp_path)


@dataclass
class Receiver:
    """A loopback webhook endpoint recording what it is sent."""

    url: str
    status: int = 204
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            box[0].requests.append((dict(self.headers), json.loads(body)))
            self.send_response(box[0].status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks/origin"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a worker started by :meth:`Origin.start_worker` and its tools."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)

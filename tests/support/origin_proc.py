"""The real origin as a subprocess on a free loopback port, for tests of anything that fills.

```python
from tests.support.origin_proc import run_origin, write_object

write_object(media_root, "/v/abc/h264-360p/seg-00001.m4s", b"...")
with run_origin(media_root) as origin:
    url = origin.base_url + "/v/abc/h264-360p/seg-00001.m4s"
```

The process is started as ``python -m origin.cli serve -c <tmp config>`` (no install needed),
waited for until ``/healthz`` answers 200, and stopped by its PID at the end: SIGTERM, then
SIGKILL after :data:`STOP_TIMEOUT` seconds (process handling: :mod:`tests.support.procs`). Its
stderr (JSON log lines) goes to a file that :meth:`OriginProc.log_text` reads, and start-up
failures quote it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import Proc, free_port, python_module
from vodedge.paths import parse_object_path

START_TIMEOUT = 15.0
"""Seconds the origin may take to answer /healthz."""
STOP_TIMEOUT = 10.0
"""Seconds after SIGTERM before the process is killed."""
_START_ATTEMPTS = 3  # a free port can be taken between choosing and binding it


@dataclass
class OriginProc:
    """A running origin: ``base_url`` like ``http://127.0.0.1:40123``, its process and log."""

    base_url: str
    port: int
    media_root: Path
    handle: Proc
    config: Path | None = None
    """The config file it runs with (an encode worker can share it)."""

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.handle.proc

    @property
    def log_path(self) -> Path:
        return self.handle.log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The complete JSON log lines written so far, parsed (a line still being written,
        without its newline yet, is left for the next read)."""
        lines = self.log_text().split("\n")[:-1]
        return [json.loads(x) for x in lines if x.startswith("{")]

    def wait_for_log(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first log record ``match`` accepts, waiting for it (access lines are written
        just after the response, so a client can see the answer before the line exists)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.log_records() if match(r)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching log line in {timeout:g} s")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
        return self.handle.stop(timeout)


def write_config(
    path: Path,
    media_root: Path,
    port: int,
    level: str = "info",
    api: Mapping[str, object] | None = None,
    pipeline: Mapping[str, object] | None = None,
) -> Path:
    """An origin config listening on ``127.0.0.1:port`` and serving ``media_root``; the catalog,
    uploads, sources and the pipeline's work directory live next to ``path``. ``api`` and
    ``pipeline`` add keys of those tables."""
    where = path.parent
    api_table = {"upload_dir": str(where / "uploads"), **(api or {})}
    pipeline_table = {"work_dir": str(where / "work"), **(pipeline or {})}
    # JSON strings, numbers, booleans and arrays of them are valid TOML values.
    path.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f"[media]\nroot = {json.dumps(str(media_root))}\n"
        f"sources = {json.dumps(str(where / 'sources'))}\n"
        f"[log]\nlevel = {json.dumps(level)}\n"
        f"[catalog]\npath = {json.dumps(str(where / 'catalog.db'))}\n"
        + "[api]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in api_table.items())
        + "[pipeline]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in pipeline_table.items())
    )
    return path


def object_file(media_root: Path, key: str) -> Path:
    """Where the origin keeps the object ``key`` (a valid ``/v/...`` path)."""
    parsed = parse_object_path(key)
    if parsed.token is not None:
        raise ValueError(f"{key!r}: give the object path without the token")
    return media_root.joinpath(*key.lstrip("/").split("/"))


def write_object(media_root: Path, key: str, data: bytes) -> Path:
    """Publish ``data`` as object ``key`` under ``media_root``; return the file path."""
    path = object_file(media_root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def start_origin(
    config: Path,
    log_path: Path,
    media_root: Path,
    port: int,
    env: Mapping[str, str] | None = None,
) -> OriginProc:
    """Start one origin with ``config`` (listening on ``port``) and the extra environment
    ``env``; raise if it is not healthy."""
    argv = python_module("origin.cli", "serve", "-c", str(config))
    handle = Proc(argv, log_path, dict(env) if env else None).start()
    base_url = f"http://127.0.0.1:{port}"
    handle.wait_healthy(base_url + "/healthz", START_TIMEOUT)
    return OriginProc(base_url, port, media_root, handle, config)


@contextmanager
def run_origin(
    media_root: Path,
    log_level: str = "info",
    workdir: Path | None = None,
    api: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    pipeline: Mapping[str, object] | None = None,
) -> Iterator[OriginProc]:
    """A real origin serving ``media_root`` on a free loopback port, stopped at exit.

    Its config, log and catalog go to ``workdir`` when given (kept afterwards), else to a
    temporary directory removed at exit. ``api`` sets keys of the config's ``[api]`` table;
    ``env`` adds environment variables (``NOTIFY_SOCKET``).
    """
    with tempfile.TemporaryDirectory(prefix="vodedge-origin-") as tmp:
        where = workdir if workdir is not None else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        origin: OriginProc | None = None
        for attempt in range(_START_ATTEMPTS):
            port = free_port()
            config = write_config(where / "origin.toml", media_root, port, log_level, api, pipeline)
            try:
                log_path = where / f"origin-{port}.log"
                origin = start_origin(config, log_path, media_root, port, env)
                break
            except RuntimeError as e:
                if attempt == _START_ATTEMPTS - 1 or "in use" not in str(e):
                    raise
        assert origin is not None
        try:
            yield origin
        finally:
            origin.stop()

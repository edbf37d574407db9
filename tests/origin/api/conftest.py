"""The origin's app (media + API) served in-process on a free loopback port, over a real SQLite
catalog and real directories in tmp_path, with an authenticated aiohttp client.

```python
async def test_x(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/uploads", json={...})
```
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from origin.api import ApiSettings, make_api
from origin.catalog import Catalog, PublishedFile, Rendition, SqliteCatalog, Video
from origin.metrics.serve import ServeMetrics
from origin.serve import make_app
from origin.storage import LocalStorage, MediaWriter

TOKEN = "test-token-0123456789"
OTHER_TOKEN = "other-token-0123456789"
MAX_UPLOAD = 4 * 2**20
"""api.max_upload_size of the test server."""


@dataclass
class Api:
    """A running origin app: its URL, catalog, directories and an authenticated session."""

    base_url: str
    catalog: SqliteCatalog
    settings: ApiSettings
    media_root: Path
    session: aiohttp.ClientSession
    port: int
    metrics: ServeMetrics
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, Any, dict[str, str]]:
        """One request; the answer's status, parsed JSON (or text) and headers."""
        sent = {} if token is None else {"Authorization": f"Bearer {token}"}
        sent.update(headers or {})
        async with self.session.request(
            method, self.base_url + path, json=json_body, data=data, headers=sent
        ) as r:
            raw = await r.read()
            answer: Any = raw.decode(errors="replace")
            if r.content_type == "application/json" and raw:
                answer = json.loads(raw)
            return r.status, answer, dict(r.headers)

    async def create_upload(self, data: bytes, **fields: Any) -> dict[str, Any]:
        body = {"title": "A title", "size": len(data), "sha256": sha256(data)} | fields
        status, answer, _ = await self.call("POST", "/api/v1/uploads", json_body=body)
        assert status == 201, answer
        return dict(answer)

    async def upload(self, data: bytes, **fields: Any) -> dict[str, Any]:
        """Create an upload and send ``data`` in one PUT; the completed upload."""
        created = await self.create_upload(data, **fields)
        status, answer, _ = await self.call("PUT", created["upload_url"], data=data)
        assert status == 200, answer
        assert answer["status"] == "complete"
        return dict(answer)

    def publish(self, video_id: str, files: int = 3) -> Video:
        """Pretend the pipeline ran: write ``files`` files and make the video READY."""
        keys = ["master.m3u8", *(f"h264-360p/seg-{i:05d}.m4s" for i in range(1, files))]
        published = []
        for key in keys:
            path = self.media_root / "v" / video_id / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.encode() * 10)
            rendition = key.partition("/")[0] if "/" in key else None
            published.append(PublishedFile(f"/v/{video_id}/{key}", path.stat().st_size, rendition))
        self.catalog.set_status(video_id, "TRANSCODING")
        return self.catalog.set_published(
            video_id,
            [Rendition("h264-360p", "video", "h264", 640, 360, 800_000, 700_000, "avc1.64001e")],
            published,
        )


def api_app() -> web.Application:
    """The API application, for its route table (no handler runs: no catalog, no storage)."""
    settings = ApiSettings((), False, 1, Path("uploads"), Path("sources"), 1)
    return make_api(cast(Catalog, None), cast(MediaWriter, None), settings)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def settings(tmp_path: Path) -> ApiSettings:
    return ApiSettings(
        tokens=(TOKEN, OTHER_TOKEN),
        public_read=False,
        max_upload_size=MAX_UPLOAD,
        upload_dir=tmp_path / "uploads",
        sources=tmp_path / "sources",
        max_attempts=2,
    )


class Ticker:
    """A clock that moves 1 ms per reading: every change has its own time, in call order."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    with SqliteCatalog.open(tmp_path / "catalog.db", now=Ticker()) as c:
        yield c


async def serve(
    catalog: SqliteCatalog, settings: ApiSettings, media_root: Path
) -> AsyncIterator[Api]:
    storage = LocalStorage(media_root)
    metrics = ServeMetrics(CollectorRegistry())
    app = make_app(storage, make_api(catalog, storage, settings, metrics), metrics)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            yield Api(url, catalog, settings, media_root, session, port, metrics)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api(catalog: SqliteCatalog, settings: ApiSettings, tmp_path: Path) -> AsyncIterator[Api]:
    async for running in serve(catalog, settings, tmp_path / "media"):
        yield running


@pytest.fixture
async def public_api(
    catalog: SqliteCatalog, settings: ApiSettings, tmp_path: Path
) -> AsyncIterator[Api]:
    async for running in serve(catalog, replace(settings, public_read=True), tmp_path / "media"):
        yield running

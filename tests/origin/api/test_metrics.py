"""``serve``'s metrics against the live app: every counter moves after the request that should
move it, labels are route templates (never ids), and ``/metrics`` answers without a token."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from origin.api import ApiSettings
from origin.catalog import SqliteCatalog
from origin.metrics.catalog import CatalogCollector
from origin.pipeline.jobs import KINDS
from tests.origin.api.conftest import MAX_UPLOAD, TOKEN, Api, serve, sha256

DATA = random.Random(7).randbytes(200_000)
IDLE_S = 0.3


def sample(api: Api, name: str, **labels: str) -> float:
    value = api.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def requests(api: Api, route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return sample(api, "vodedge_origin_http_requests_total", **labels)


def refused(api: Api, reason: str) -> float:
    return sample(api, "vodedge_origin_uploads_refused_total", reason=reason)


@pytest.fixture
async def stalling_api(
    catalog: SqliteCatalog, settings: ApiSettings, tmp_path: Path
) -> AsyncIterator[Api]:
    """The app with a short ``api.part_idle_timeout_s``."""
    quick = replace(settings, part_idle_timeout_s=IDLE_S)
    async for running in serve(catalog, quick, tmp_path / "media"):
        yield running


async def test_requests_are_counted_by_route_template_method_and_status_class(api: Api) -> None:
    video = api.catalog.create_video("T")
    api.publish(video.video_id)
    key = f"/v/{video.video_id}/master.m3u8"
    async with api.session.get(api.base_url + key) as r:
        body = await r.read()
        assert r.status == 200
    await api.call("GET", f"/api/v1/videos/{video.video_id}")
    await api.call("GET", "/api/v1/videos/nosuch")
    await api.call("GET", "/api/v1/nowhere")
    await api.call("GET", "/favicon.ico")
    await api.call("TRACE", "/healthz")
    assert requests(api, "/v/{key}", "GET", "2xx") == 1
    assert requests(api, "/api/v1/videos/{video_id}", "GET", "2xx") == 1
    assert requests(api, "/api/v1/videos/{video_id}", "GET", "4xx") == 1
    assert requests(api, "unmatched", "GET", "4xx") == 1
    assert requests(api, "/{tail}", "GET", "4xx") == 1  # not a /v/ path: 400
    assert requests(api, "unmatched", "other", "4xx") == 1  # 405, method not kept as sent
    seconds = "vodedge_origin_http_request_duration_seconds_count"
    assert sample(api, seconds, route="/v/{key}") == 1
    assert sample(api, "vodedge_origin_served_bytes_total") == len(body)


async def test_metrics_need_no_token_and_parse(api: Api) -> None:
    await api.upload(DATA)
    async with api.session.get(api.base_url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [received] = families["vodedge_origin_upload_received_bytes"].samples[:1]
    assert received.value == len(DATA)
    assert requests(api, "/metrics", "GET", "2xx") == 1
    async with api.session.get(api.base_url + "/metrics") as r:
        assert r.status == 200
    assert requests(api, "/metrics", "GET", "2xx") == 2


async def test_upload_bytes_and_refusals_by_reason(api: Api) -> None:
    await api.upload(DATA)
    assert sample(api, "vodedge_origin_upload_received_bytes_total") == len(DATA)
    body = {"title": "T", "size": MAX_UPLOAD + 1, "sha256": sha256(b"x")}
    status, _, _ = await api.call("POST", "/api/v1/uploads", json_body=body)
    assert status == 413 and refused(api, "too_large") == 1
    wrong = await api.create_upload(DATA, sha256=sha256(b"other"))
    status, _, _ = await api.call("PUT", wrong["upload_url"], data=DATA)
    assert status == 422 and refused(api, "checksum_mismatch") == 1
    created = await api.create_upload(DATA)
    part = {"Content-Range": f"bytes 10-19/{len(DATA)}"}
    status, _, _ = await api.call("PUT", created["upload_url"], data=DATA[10:20], headers=part)
    assert status == 409 and refused(api, "offset_mismatch") == 1
    assert sample(api, "vodedge_origin_upload_idle_timeouts_total") == 0


async def test_a_stalled_part_is_counted_and_keeps_its_bytes(stalling_api: Api) -> None:
    api = stalling_api
    created = await api.create_upload(DATA)
    url, size = created["upload_url"], len(DATA)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        (
            f"PUT {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {size}\r\nContent-Range: bytes 0-{size - 1}/{size}\r\n\r\n"
        ).encode()
        + DATA[:50_000]
    )
    await writer.drain()
    try:
        # nothing more is sent: after IDLE_S the server keeps what came and answers
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"Upload-Offset: 50000" in head
    assert sample(api, "vodedge_origin_upload_idle_timeouts_total") == 1
    assert sample(api, "vodedge_origin_upload_received_bytes_total") == 50_000


async def test_catalog_errors_are_counted_and_the_collector_reports_down(api: Api) -> None:
    api.metrics.registry.register(CatalogCollector(api.catalog, KINDS))
    video = api.catalog.create_video("T")
    assert sample(api, "vodedge_origin_catalog_up") == 1
    assert sample(api, "vodedge_origin_videos", status="PENDING") == 1
    assert sample(api, "vodedge_origin_videos", status="READY") == 0
    api.catalog.close()
    status, answer, _ = await api.call("GET", f"/api/v1/videos/{video.video_id}")
    assert (status, answer["error"]) == (503, "unavailable")
    assert sample(api, "vodedge_origin_catalog_errors_total") == 1
    assert sample(api, "vodedge_origin_catalog_up") == 0
    assert (
        api.metrics.registry.get_sample_value("vodedge_origin_videos", {"status": "READY"}) is None
    )

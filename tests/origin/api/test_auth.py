"""Bearer tokens on every API route: 401 without or with a wrong token (and nothing changes),
any configured token works, public_read opens catalog reads only (to readers without a token:
a wrong token is still 401), static serving stays open."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from origin.api import ApiSettings
from origin.catalog import SqliteCatalog
from tests.origin.api.conftest import OTHER_TOKEN, TOKEN, Api, api_app, serve

OPEN = {("GET", "/openapi.json")}
PUBLIC_READ = {("GET", "/videos"), ("GET", "/videos/{video_id}"), ("GET", "/search")}


def api_routes() -> list[tuple[str, str]]:
    """(method, path below /api/v1) of every route the API application has."""
    routes = api_app().router.routes()
    return sorted({(r.method, r.resource.canonical) for r in routes if r.resource})


ROUTES = api_routes()


def concrete(path: str) -> str:
    return "/api/v1" + path.replace("{upload_id}", "someupload").replace("{video_id}", "somevideo")


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r not in OPEN])
async def test_no_or_wrong_token_is_401(api: Api, method: str, path: str) -> None:
    video_id = api.catalog.create_video("Unchanged").video_id
    target = concrete(path).replace("somevideo", video_id)
    for token in (None, "", "wrong-token-0123456789", TOKEN[:-1]):
        status, answer, headers = await api.call(
            method, target, json_body={"title": "Changed", "size": 10}, token=token
        )
        assert status == 401, (method, path, token, answer)
        expected = 'Bearer realm="vodedge-origin"'
        if token:
            expected += ', error="invalid_token"'
        assert headers["WWW-Authenticate"] == expected
        if method != "HEAD":
            assert answer["error"] == "unauthorized"
    # a refused request changed nothing
    video = api.catalog.get_video(video_id)
    assert (video.title, video.view_count, video.status) == ("Unchanged", 0, "PENDING")
    assert [v.video_id for v in api.catalog.list_videos().videos] == [video_id]


async def test_every_configured_token_works(api: Api) -> None:
    for token in (TOKEN, OTHER_TOKEN):
        status, _, _ = await api.call("GET", "/api/v1/videos", token=token)
        assert status == 200
    status, _, _ = await api.call(
        "GET", "/api/v1/videos", token=None, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert status == 401


async def test_open_routes_need_no_token(api: Api) -> None:
    status, doc, _ = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    status, text, _ = await api.call("GET", "/healthz", token=None)
    assert (status, text) == (200, "ok\n")
    (api.media_root / "v" / "t").mkdir(parents=True)
    (api.media_root / "v" / "t" / "master.m3u8").write_text("#EXTM3U\n")
    status, text, _ = await api.call("GET", "/v/t/master.m3u8", token=None)
    assert (status, text) == (200, "#EXTM3U\n")


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_public_read_opens_catalog_reads_only(
    public_api: Api, method: str, path: str
) -> None:
    status, _, _ = await public_api.call(method, concrete(path), token=None)
    if (method, path) in OPEN | PUBLIC_READ:
        assert status != 401, (method, path)
    else:
        assert status == 401, (method, path)


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC_READ))
async def test_public_read_refuses_a_wrong_token(public_api: Api, method: str, path: str) -> None:
    """No token is an anonymous reader; a wrong one is an error (RFC 6750 invalid_token), so
    that answers to anonymous readers can leave out what only token holders may read."""
    status, _, _ = await public_api.call(method, concrete(path), token=None)
    assert status != 401
    status, _, headers = await public_api.call(method, concrete(path), token="wrong-token-012")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="vodedge-origin", error="invalid_token"'
    status, _, _ = await public_api.call(method, concrete(path), token=OTHER_TOKEN)
    assert status != 401


async def test_no_configured_token_refuses_everyone(
    catalog: SqliteCatalog, settings: ApiSettings, tmp_path: Path
) -> None:
    async for api in serve(catalog, replace(settings, tokens=()), tmp_path / "media"):
        for token in (TOKEN, "", None):
            status, _, _ = await api.call("GET", "/api/v1/videos", token=token)
            assert status == 401
        status, _, _ = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200

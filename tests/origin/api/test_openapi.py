"""The API's OpenAPI 3.1 document: valid, exactly the app's routes, the app's auth rules, and the
answers of the live app (successes and errors) match the schemas it gives for their status."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any, cast

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from prometheus_client import CollectorRegistry

from origin.api import ApiSettings
from origin.api.app import routes
from origin.api.auth import Access
from origin.api.openapi import document
from origin.catalog import Catalog
from origin.metrics.serve import ServeMetrics
from origin.storage import MediaWriter
from tests.origin.api.conftest import Api, api_app, sha256

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.OPEN: [],
    Access.PUBLIC_READ: [{"bearerAuth": []}, {}],
    Access.TOKEN: [{"bearerAuth": []}],
}
DATA = random.Random(9).randbytes(5000)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document("1.2.3")


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_is_a_valid_openapi_3_1_document(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert json.loads(json.dumps(doc)) == doc
    for schema in doc["components"]["schemas"].values():
        OAS31Validator.check_schema(schema)


def test_every_call_returns_a_fresh_document() -> None:
    a, b = document("x"), document("x")
    frozen = copy.deepcopy(b)
    a["components"]["schemas"]["Error"]["properties"]["error"]["type"] = "integer"
    a["paths"]["/videos"]["get"]["parameters"].clear()
    assert b == frozen == document("x")


def test_document_and_app_have_the_same_routes(doc: dict[str, Any]) -> None:
    app_routes = {
        (r.method, r.resource.canonical): r.name
        for r in api_app().router.routes()
        if r.resource is not None
    }
    documented = {key: op["operationId"] for key, op in operations(doc).items()}
    assert app_routes == documented
    assert len(set(documented.values())) == len(documented)


def test_security_and_errors_match_the_app(doc: dict[str, Any]) -> None:
    ops = operations(doc)
    settings = ApiSettings((), False, 1, Path("uploads"), Path("sources"), 1)
    metrics = ServeMetrics(CollectorRegistry())
    table = routes(cast(Catalog, None), cast(MediaWriter, None), settings, metrics)
    for route in table:
        op = ops[route.method, route.path]
        assert op["security"] == SECURITY[route.access], route.name
        assert ("401" in op["responses"]) == (route.access is not Access.OPEN), route.name
        for status, answer in op["responses"].items():
            assert answer["description"], (route.name, status)
            if int(status) >= 400 and route.method != "HEAD":
                assert answer["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }


def test_request_schemas_are_closed(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name in ("NewUpload", "VideoPatch", "ViewsRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    new_upload = OAS31Validator({**schemas["NewUpload"], "components": doc["components"]})
    assert new_upload.is_valid({"title": "t", "size": 1, "tags": ["a"], "sha256": "a" * 64})
    for bad in ({"title": "t"}, {"title": " ", "size": 1}, {"title": "t", "size": 0, "x": 1}):
        assert not new_upload.is_valid(bad), bad


class Checker:
    """Validates live answers against the document, remembering which operations it saw."""

    def __init__(self, doc: dict[str, Any], api: Api) -> None:
        self.doc = doc
        self.api = api
        self.ops = operations(doc)
        self.seen: set[tuple[str, str, int]] = set()

    async def call(
        self, method: str, template: str, path: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        target = "/api/v1" + (path or template)
        status, body, headers = await self.api.call(method, target, **kwargs)
        op = self.ops[method, template]
        answer = op["responses"].get(str(status))
        assert answer is not None, f"{method} {template}: {status} is not documented: {body}"
        self.seen.add((method, template, status))
        for name in answer.get("headers", {}):
            assert name in headers, (method, template, status, name)
        if method != "HEAD":
            schema = answer["content"]["application/json"]["schema"]
            validator = OAS31Validator({**schema, "components": self.doc["components"]})
            errors = [e.message for e in validator.iter_errors(body)]
            assert not errors, (method, template, status, errors)
        return status, body


async def test_live_answers_match_the_document(doc: dict[str, Any], api: Api) -> None:
    c = Checker(doc, api)
    upload_path = "/uploads/{upload_id}"
    await c.call("GET", "/openapi.json")
    _, created = await c.call(
        "POST", "/uploads", json_body={"title": "T", "size": len(DATA), "sha256": sha256(DATA)}
    )
    upload = f"/uploads/{created['upload_id']}"
    await c.call("POST", "/uploads", json_body={"title": "T", "size": 10**12})  # 413
    await c.call("POST", "/uploads", json_body={"title": "T"})  # 400
    await c.call("HEAD", upload_path, upload)
    await c.call("HEAD", upload_path, "/uploads/nosuch")
    await c.call("GET", upload_path, upload)
    await c.call("GET", upload_path, "/uploads/bad.id")
    await c.call("POST", upload_path + "/complete", upload + "/complete")  # 409
    range_ = {"Content-Range": f"bytes 0-99/{len(DATA)}"}
    await c.call("PUT", upload_path, upload, data=DATA[:100], headers=range_)
    await c.call("PUT", upload_path, upload, data=DATA[:100], headers=range_)  # 409
    await c.call("PUT", upload_path, upload, data=DATA[:10], headers={"Content-Range": "x"})
    rest = {"Content-Range": f"bytes 100-{len(DATA) - 1}/{len(DATA)}"}
    _, done = await c.call("PUT", upload_path, upload, data=DATA[100:], headers=rest)
    assert done["video"]["status"] == "PENDING"
    await c.call("POST", upload_path + "/complete", upload + "/complete")
    await c.call("DELETE", upload_path, upload)  # 409: complete
    _, other = await c.call(
        "POST", "/uploads", json_body={"title": "U", "size": 5, "sha256": "0" * 64}
    )
    await c.call("DELETE", upload_path, f"/uploads/{other['upload_id']}")
    mismatch = {"title": "U", "size": 3, "sha256": "0" * 64}
    _, bad = await c.call("POST", "/uploads", json_body=mismatch)
    await c.call("PUT", upload_path, f"/uploads/{bad['upload_id']}", data=b"abc")  # 422

    video_id = done["video_id"]
    video = "/videos/{video_id}"
    here = f"/videos/{video_id}"
    await c.call("GET", "/videos")
    await c.call("GET", "/videos", "/videos?limit=0")
    await c.call("GET", video, here)
    await c.call("GET", video, "/videos/nosuch")
    await c.call("GET", video + "/jobs", here + "/jobs")
    await c.call("POST", video + "/rerun", here + "/rerun")  # 409
    await c.call("POST", video + "/views", here + "/views", json_body={"count": 2})
    await c.call("POST", video + "/views", here + "/views", json_body={"count": -1})
    await c.call("PATCH", video, here, json_body={"description": "d", "tags": ["a"]})
    await c.call("PATCH", video, here, json_body={"bogus": 1})
    await c.call("GET", "/search", "/search?q=T")
    await c.call("GET", "/search", "/search")
    api.publish(video_id)
    await c.call("GET", video, here)  # with renditions and files
    _, deleted = await c.call("DELETE", video, here)
    assert deleted["files"]
    await c.call("GET", "/videos", "/videos?include_deleted=1")
    failed = api.catalog.create_video("Broken")
    api.catalog.set_status(failed.video_id, "FAILED", "probe: not a video")
    await c.call("POST", video + "/rerun", f"/videos/{failed.video_id}/rerun")
    await c.call("GET", video, here, token=None)  # 401

    # every operation was seen answering with a success
    succeeded = {(m, p) for m, p, s in c.seen if s < 300}
    assert succeeded == set(c.ops)

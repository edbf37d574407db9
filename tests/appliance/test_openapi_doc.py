"""The admin API's OpenAPI document: valid 3.0.3, complete, secured, and usable by schemathesis.

No appliance runs here: this checks the document itself (the fuzz test against a live
appliance relies on it) and that the prefill job's own JSON matches it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from appliance.admin.openapi import document
from appliance.prefill import Job, JobState, PrefillFile, PrefillSpec

EXPECTED: dict[str, set[str]] = {
    "/healthz": {"get"},
    "/metrics": {"get"},
    "/admin/v1/openapi.json": {"get"},
    "/admin/v1/status": {"get"},
    "/admin/v1/prefill": {"get", "post"},
    "/admin/v1/prefill/{job_id}": {"get", "delete"},
    "/admin/v1/purge": {"post"},
    "/admin/v1/contents": {"get"},
    "/admin/v1/titles": {"get"},
    "/admin/v1/drain": {"post"},
    "/admin/v1/undrain": {"post"},
}
OPEN = {("/healthz", "get"), ("/metrics", "get"), ("/admin/v1/openapi.json", "get")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document("1.2.3")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def validator(doc: dict[str, Any], name: str) -> OAS30Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return OAS30Validator(root)


def test_is_a_valid_openapi_3_0_document(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.0.3"
    assert doc["info"]["version"] == "1.2.3"
    validate(doc, cls=OpenAPIV30SpecValidator)
    # plain JSON, served as is
    assert json.loads(json.dumps(doc)) == doc


def test_every_call_returns_a_fresh_document() -> None:
    a, b = document("x"), document("x")
    assert a == b
    frozen = copy.deepcopy(b)
    a["paths"]["/healthz"]["get"]["security"].append({"x": []})
    a["components"]["schemas"]["Error"]["properties"]["error"]["type"] = "integer"
    a["paths"]["/admin/v1/titles"]["get"]["parameters"][0]["name"] = "changed"
    assert b == frozen == document("x")


def test_paths_and_methods_are_exactly_the_api(doc: dict[str, Any]) -> None:
    got = {p: {m for m in item if m in METHODS} for p, item in doc["paths"].items()}
    assert got == EXPECTED
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)) == 13


def test_security_and_401(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for path, method, op in operations(doc):
        if (path, method) in OPEN:
            assert op["security"] == [], (path, method)
            assert "401" not in op["responses"], (path, method)
        else:
            assert op["security"] == [{"bearerAuth": []}], (path, method)
            r401 = op["responses"]["401"]
            assert r401["content"]["application/json"]["schema"] == ERROR_REF, (path, method)


def test_operations_are_described_and_errors_are_json(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        assert op["summary"] and op["tags"], (path, method)
        for status, resp in op["responses"].items():
            assert resp["description"], (path, method, status)
            if path in ("/healthz", "/metrics"):
                assert set(resp["content"]) == {"text/plain"}, (path, status)
            elif int(status) >= 400:
                assert resp["content"] == {"application/json": {"schema": ERROR_REF}}
            else:
                # every JSON shape is a named component
                assert set(resp["content"]["application/json"]["schema"]) == {"$ref"}
    ops = {(p, m): op for p, m, op in operations(doc)}
    assert set(ops["/healthz", "get"]["responses"]) == {"200", "503"}
    assert set(ops["/admin/v1/prefill", "post"]["responses"]) == {"202", "400", "401", "413", "429"}
    assert ops["/admin/v1/prefill", "post"]["responses"]["202"]["headers"]["Location"]["required"]
    assert set(ops["/admin/v1/prefill/{job_id}", "get"]["responses"]) == {"200", "401", "404"}
    assert set(ops["/admin/v1/prefill/{job_id}", "delete"]["responses"]) == {"200", "401", "404"}


def test_request_schemas_are_closed_and_bounded(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name in ("PrefillRequest", "PrefillObject", "PurgeRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    prefill = validator(doc, "PrefillRequest")
    ok = {"objects": [{"path": "/v/abc/720p/seg_1.ts", "size": 10}], "rate_bytes_per_s": 1024}
    assert prefill.is_valid(ok)
    assert prefill.is_valid(ok | {"concurrency": 64, "name": "night fill"})
    bads: list[dict[str, Any]] = [
        {},
        {"objects": []},
        ok | {"extra": 1},
        {"objects": [{"path": "/v/abc/x.ts", "bogus": 1}]},
        {"objects": [{"path": "/t/tok/v/abc/x.ts"}]},
        {"objects": [{"path": "/v/abc/x.ts", "size": -1}]},
        ok | {"rate_bytes_per_s": 1000},
        ok | {"concurrency": 65},
        ok | {"name": "n" * 201},
    ]
    for bad in bads:
        assert not prefill.is_valid(bad), bad
    purge = validator(doc, "PurgeRequest")
    assert purge.is_valid({"paths": ["/v/abc/x.ts"]})
    assert purge.is_valid({"prefixes": ["/v/abc/"], "paths": []})
    for bad in ({}, {"paths": []}, {"paths": [], "prefixes": []}, {"prefixes": ["/x/"]}):
        assert not purge.is_valid(bad), bad
    params = {p["name"]: p for p in doc["paths"]["/admin/v1/contents"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert params["prefix"]["schema"]["default"] == "/v/"


def test_prefill_job_json_matches_the_document(doc: dict[str, Any]) -> None:
    files = (
        PrefillFile("/v/abc/a.ts", 100),
        PrefillFile("/v/abc/b.ts"),
        PrefillFile("/v/abc/c.ts"),
    )
    job = Job("0123456789abcdef", PrefillSpec(files, 1 << 20, 4, "t"), created_at=1000.0)
    summary, detail = validator(doc, "PrefillJobSummary"), validator(doc, "PrefillJob")
    summary.validate(job.summary())
    detail.validate(job.detail(1000.0))  # nothing measured yet: nulls
    job.set_state(JobState.RUNNING, 1001.0)
    job.take()
    job.record(job.take() or 0, "failed", 0, "origin answered 404")
    job.set_state(JobState.CANCELLED, 1010.0)
    detail.validate(job.detail(1010.0))
    validator(doc, "PrefillJobList").validate({"jobs": [job.summary()]})
    validator(doc, "Error").validate({"error": "no such prefill job"})


def test_schemathesis_generates_a_case_for_every_operation(doc: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document("1.2.3"))
    ops = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the operation's definition loaded
        ops.append(result.ok())
    assert {(op.path, op.method.lower()) for op in ops} == {
        (p, m) for p, methods in EXPECTED.items() for m in methods
    }
    for op in ops:
        modes = [GenerationMode.POSITIVE]
        if op.path_parameters or op.query or op.body:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            sent: list[dict[str, Any]] = []

            @given(op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=3,
                phases=[Phase.explicit, Phase.generate],
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            def generate(case: schemathesis.Case[Any]) -> None:
                sent.append(case.as_transport_kwargs(base_url="http://127.0.0.1:9"))  # noqa: B023

            generate()
            assert sent, (op.label, mode)
            assert sent[0]["method"] == op.method.upper()
            assert sent[0]["url"].startswith("http://127.0.0.1:9/")

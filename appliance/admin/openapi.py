"""The admin API's OpenAPI 3.0.3 document, built in Python and served at /admin/v1/openapi.json.

This is the contract of :mod:`appliance.admin.api`: the tests validate it and fuzz the live
API against it. Request schemas are closed (``additionalProperties: false``, as the handlers
refuse unknown fields); response schemas stay open so that adding a field is not a breaking
change. Every error body is ``{"error": "<message>"}`` (application/json).
"""

from __future__ import annotations

from typing import Any

from vodedge.openapi import JSON, operation
from vodedge.openapi import json_response as _json_response
from vodedge.openapi import number as _num
from vodedge.openapi import obj as _obj
from vodedge.openapi import query as _query
from vodedge.openapi import ref as _ref
from vodedge.openapi import string as _str

OPENAPI_VERSION = "3.0.3"

# The same rules as appliance.admin.requests and vodedge.paths (a coarser form of them).
OBJECT_PATH_PATTERN = r"^/v/[A-Za-z0-9_-]{1,64}/"
PREFIX_PATTERN = r"^/v/"
JOB_ID_PATTERN = r"^[a-f0-9]{16}$"
MAX_KEY_LEN = 400
MAX_PAGE = 1000
DEFAULT_PAGE = 100

TEXT = "text/plain"

SECURITY_SCHEME = "bearerAuth"


def _security(authenticated: bool) -> list[dict[str, list[str]]]:
    return [{SECURITY_SCHEME: []}] if authenticated else []


def _nullable(type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "nullable": True, "description": description, **extra}


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "minimum": 0, "description": description, **extra}


def _object_path(description: str) -> dict[str, Any]:
    return _str(
        description,
        pattern=OBJECT_PATH_PATTERN,
        maxLength=MAX_KEY_LEN,
        example="/v/abc123/720p/seg_00001.ts",
    )


def _prefix(description: str) -> dict[str, Any]:
    return _str(description, pattern=PREFIX_PATTERN, maxLength=MAX_KEY_LEN, example="/v/abc123/")


def _schemas() -> dict[str, Any]:
    service_state = _str(
        "serving: takes traffic; draining: taken out of steering by an operator; "
        "failed: cannot serve (no worker or no healthy disk).",
        enum=["serving", "draining", "failed"],
    )
    job_state = _str(
        "queued: waiting its turn; running: fetching; waiting_window: paused outside the fill "
        "window; done: finished (see files_failed); cancelled: stopped by an operator.",
        enum=["queued", "running", "waiting_window", "done", "cancelled"],
    )

    def summary_props() -> dict[str, Any]:
        return {
            "job_id": _str("Job identifier (16 hex digits).", pattern=JOB_ID_PATTERN),
            "name": _str("Operator-given label; empty if none was given."),
            "state": _ref("PrefillJobState"),
            "created_at": _num("When the job was submitted (unix seconds)."),
            "finished_at": _nullable(
                "number", "When the job ended (unix seconds); null while open."
            ),
            "files_total": _int("Distinct files in the job."),
            "files_done": _int("Files fetched and stored."),
            "files_failed": _int("Files that could not be fetched (see errors on the job)."),
            "files_skipped": _int("Files already in the cache, not fetched again."),
            "bytes_done": _int("Bytes fetched from the origin so far."),
        }

    detail_props: dict[str, Any] = {
        "started_at": _nullable(
            "number", "When fetching first began (unix seconds); null if not yet."
        ),
        "rate_bytes_per_s": _int("Rate limit the job runs at (bytes per second)."),
        "concurrency": _int("Files fetched at the same time."),
        "files_pending": _int("Files not started yet."),
        "files_in_flight": _int("Files being fetched now."),
        "bytes_declared": _int(
            "Sum of the sizes declared in the request (0 where none was given)."
        ),
        "measured_rate_bytes_per_s": _nullable(
            "number", "Average fetch rate while running (bytes per second); null until measurable."
        ),
        "errors": {
            "type": "array",
            "maxItems": 100,
            "description": "The first failures (at most 100), one per file.",
            "items": _ref("PrefillError"),
        },
    }
    ratio = _obj(
        "Share of the traffic served from the cache over the last minute and five minutes.",
        {
            "1m": _nullable(
                "number", "Last minute, 0..1; null without traffic.", minimum=0, maximum=1
            ),
            "5m": _nullable(
                "number", "Last five minutes, 0..1; null without traffic.", minimum=0, maximum=1
            ),
        },
    )
    return {
        "Error": _obj(
            "Every error answer.", {"error": _str("Human-readable reason, safe to show or log.")}
        ),
        "ServiceState": service_state,
        "StateResult": _obj("The service state after the call.", {"state": _ref("ServiceState")}),
        "Workers": _obj(
            "Worker processes that serve the public listener.",
            {
                "configured": _int("Workers the configuration asks for."),
                "running": _int("Workers alive now."),
                "restarts": _int("Worker restarts since the service started."),
            },
        ),
        "Disk": _obj(
            "One cache disk.",
            {
                "path": _str("Mount point or directory of the disk's store."),
                "capacity_bytes": _int("Byte budget configured for cached objects."),
                "used_bytes": _int("Bytes held by cached objects."),
                "objects": _int("Objects held."),
                "healthy": {
                    "type": "boolean",
                    "description": "False once the disk is out of service.",
                },
                "error": _nullable("string", "Why the disk is out of service; null when healthy."),
            },
        ),
        "HitRatioWindow": ratio,
        "HitRatio": _obj(
            "Cache hit ratios, by request count and by bytes.",
            {"requests": _ref("HitRatioWindow"), "bytes": _ref("HitRatioWindow")},
        ),
        "PrefillOverview": _obj(
            "Prefill jobs known to the appliance.",
            {
                "active": _int("Jobs queued, running or waiting for the fill window."),
                "jobs": {"type": "array", "items": _ref("PrefillJobSummary")},
            },
        ),
        "ControlPlaneLink": _obj(
            "Heartbeats to the control plane.",
            {
                "configured": {
                    "type": "boolean",
                    "description": "False when no control plane URL is configured (standalone).",
                },
                "last_success_at": _nullable("number", "Last accepted heartbeat (unix seconds)."),
                "consecutive_failures": _int("Heartbeats failed in a row; 0 when healthy."),
                "last_error": _nullable(
                    "string", "Reason of the last failed heartbeat; null if none."
                ),
            },
        ),
        "Status": _obj(
            "What the appliance is doing now: state, disks, traffic, prefill and control plane.",
            {
                "version": _str("Software version."),
                "started_at": _num("When the service started (unix seconds)."),
                "uptime_s": _num("Seconds since the service started."),
                "state": _ref("ServiceState"),
                "state_reason": _str(
                    "Why the service is in this state, e.g. 'no disk in service'."
                ),
                "config_digest": _str("Digest of the configuration in force (changes on reload)."),
                "workers": _ref("Workers"),
                "disks": {"type": "array", "items": _ref("Disk")},
                "hit_ratio": _ref("HitRatio"),
                "egress_bytes_per_s": _num("Bytes per second sent to clients, recent average."),
                "open_connections": _int("Client connections open on the public listener."),
                "fills_in_flight": _int("Origin or peer fetches in progress (misses and prefill)."),
                "prefill": _ref("PrefillOverview"),
                "control_plane": _ref("ControlPlaneLink"),
            },
        ),
        "PrefillObject": _obj(
            "One file to fetch ahead of demand.",
            {
                "path": _object_path(
                    "Object path, /v/{video_id}/..., without a /t/{token} prefix."
                ),
                "size": _int("Declared size in bytes, for progress reporting (optional)."),
            },
            closed=True,
            required=["path"],
        ),
        "PrefillRequest": _obj(
            "Files to fetch into the cache, at a bounded rate. Duplicate paths are fetched once.",
            {
                "objects": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100_000,
                    "description": "Files to fetch (1 to 100000).",
                    "items": _ref("PrefillObject"),
                },
                "rate_bytes_per_s": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1024,
                    "description": "Rate limit in bytes per second; configured default if omitted.",
                },
                "concurrency": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 64,
                    "description": "Files fetched at once (capped by configuration).",
                },
                "name": _str("Label shown in job listings.", maxLength=200),
            },
            closed=True,
            required=["objects"],
        ),
        "PrefillAccepted": _obj(
            "The job was queued.",
            {
                "job_id": _str("Job identifier.", pattern=JOB_ID_PATTERN),
                "location": _str("Path of the job resource (also in the Location header)."),
            },
        ),
        "PrefillJobState": job_state,
        "PrefillJobSummary": _obj("A prefill job, in short.", summary_props()),
        "PrefillError": _obj(
            "One file that failed.",
            {"path": _str("Object path."), "error": _str("Why it failed.")},
        ),
        "PrefillJob": _obj(
            "A prefill job with its progress and first errors.", summary_props() | detail_props
        ),
        "PrefillJobList": _obj(
            "All prefill jobs the appliance remembers.",
            {"jobs": {"type": "array", "items": _ref("PrefillJobSummary")}},
        ),
        "PurgeRequest": {
            "type": "object",
            "description": "What to remove from every disk. Give at least one non-empty list.",
            "minProperties": 1,
            "anyOf": [
                {"required": ["paths"], "properties": {"paths": {"minItems": 1}}},
                {"required": ["prefixes"], "properties": {"prefixes": {"minItems": 1}}},
            ],
            "additionalProperties": False,
            "properties": {
                "paths": {
                    "type": "array",
                    "maxItems": 100_000,
                    "description": "Exact object paths to remove (at most 100000).",
                    "items": _object_path("Object path, /v/{video_id}/..., without a token."),
                },
                "prefixes": {
                    "type": "array",
                    "maxItems": 1000,
                    "description": "Remove all objects under these prefixes (at most 1000).",
                    "items": _prefix("Path prefix, e.g. /v/{video_id}/ for a whole title."),
                },
            },
        },
        "PurgeResult": _obj(
            "What was removed.",
            {
                "purged_objects": _int("Objects removed."),
                "purged_bytes": _int("Bytes freed."),
            },
        ),
        "CachedObject": _obj(
            "One object held in the cache.",
            {
                "path": _str("Object path."),
                "size": _int("Size in bytes."),
                "content_type": _str("Content-Type served for it."),
                "etag": _str("ETag served for it."),
                "stored_at": _num("When it was stored (unix seconds)."),
                "disk": _str("Path of the disk that holds it."),
            },
        ),
        "ContentsPage": _obj(
            "One page of cached objects, in path order.",
            {
                "objects": {"type": "array", "items": _ref("CachedObject")},
                "next_cursor": _nullable(
                    "string", "Pass as cursor for the next page; null on the last."
                ),
            },
        ),
        "Title": _obj(
            "What the cache holds of one title.",
            {
                "video_id": _str("Title (video) identifier."),
                "bytes": _int("Bytes held for this title."),
                "files": _int("Complete files held for this title."),
            },
        ),
        "TitlesPage": _obj(
            "One page of titles held, in video_id order.",
            {
                "titles": {"type": "array", "items": _ref("Title")},
                "next_cursor": _nullable(
                    "string", "Pass as cursor for the next page; null on the last."
                ),
            },
        ),
        "OpenApiDocument": {
            "type": "object",
            "description": "This OpenAPI 3.0.3 document.",
            "required": ["openapi", "info", "paths"],
        },
    }


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, "Error")


def _unauthorized() -> dict[str, Any]:
    return _error("Missing or wrong admin token.") | {
        "headers": {
            "WWW-Authenticate": {
                "description": "Bearer challenge.",
                "schema": {"type": "string"},
            }
        }
    }


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    authenticated: bool = True,
    description: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if authenticated:
        responses = responses | {"401": _unauthorized()}
    return operation(
        operation_id,
        summary,
        tag,
        responses,
        security=_security(authenticated),
        description=description,
        **extra,
    )


def _text(description: str, example: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if example is not None:
        schema["example"] = example
    return {"description": description, "content": {TEXT: {"schema": schema}}}


def _page_parameters() -> list[dict[str, Any]]:
    return [
        _query(
            "cursor",
            "Opaque: the next_cursor of the previous page; omit for the first page.",
            {"type": "string"},
        ),
        _query(
            "limit",
            f"Items per page (1 to {MAX_PAGE}).",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
        ),
    ]


def _job_id_parameter() -> dict[str, Any]:
    return {
        "name": "job_id",
        "in": "path",
        "required": True,
        "description": "Job identifier returned when the job was submitted.",
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    }


def _paths() -> dict[str, Any]:
    def no_job() -> dict[str, Any]:
        return _error("No prefill job with this id.")

    def bad_request() -> dict[str, Any]:
        return _error("The request is invalid; the message says what is wrong.")

    return {
        "/healthz": {
            "get": _operation(
                "getHealth",
                "Health for load balancers and monitoring: 200 only while serving.",
                "service",
                {
                    "200": _text("Serving.", "ok"),
                    "503": _text(
                        "Draining or failed; the body says which and why.",
                        "draining: drained by an operator",
                    ),
                },
                authenticated=False,
            )
        },
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "Prometheus metrics of the supervisor and all workers (text exposition format).",
                "service",
                {"200": _text("Metrics in the Prometheus text format, version 0.0.4.")},
                authenticated=False,
            )
        },
        "/admin/v1/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This API description (OpenAPI 3.0.3).",
                "service",
                {"200": _json_response("The OpenAPI document.", "OpenApiDocument")},
                authenticated=False,
            )
        },
        "/admin/v1/status": {
            "get": _operation(
                "getStatus",
                "Service state, disks, traffic, prefill jobs and control-plane link at a glance.",
                "service",
                {"200": _json_response("Current status.", "Status")},
            )
        },
        "/admin/v1/prefill": {
            "post": _operation(
                "createPrefillJob",
                "Queue a prefill job: fetch files into the cache ahead of demand, rate-limited.",
                "prefill",
                {
                    "202": _json_response(
                        "Job queued; poll the Location to follow it.",
                        "PrefillAccepted",
                        headers={
                            "Location": {
                                "description": "Path of the new job, /admin/v1/prefill/{job_id}.",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                    ),
                    "400": _error("The body is not valid JSON or does not match PrefillRequest."),
                    "413": _error("The body is larger than the admin API accepts (32 MiB)."),
                    "429": _error(
                        "Too many unfinished jobs (64) already: wait for some to end, or cancel."
                    ),
                },
                description="Jobs outside the configured fill window wait for it "
                "(state waiting_window). Files already cached are skipped.",
                requestBody={
                    "required": True,
                    "content": {JSON: {"schema": _ref("PrefillRequest")}},
                },
            ),
            "get": _operation(
                "listPrefillJobs",
                "List prefill jobs, open and finished.",
                "prefill",
                {"200": _json_response("All jobs the appliance remembers.", "PrefillJobList")},
            ),
        },
        "/admin/v1/prefill/{job_id}": {
            "parameters": [_job_id_parameter()],
            "get": _operation(
                "getPrefillJob",
                "Progress and first errors of one prefill job.",
                "prefill",
                {"200": _json_response("The job.", "PrefillJob"), "404": no_job()},
            ),
            "delete": _operation(
                "cancelPrefillJob",
                "Cancel a prefill job; files already fetched stay in the cache.",
                "prefill",
                {
                    "200": _json_response(
                        "The job, now cancelled (or in its final state if it had already ended).",
                        "PrefillJob",
                    ),
                    "404": no_job(),
                },
            ),
        },
        "/admin/v1/purge": {
            "post": _operation(
                "purge",
                "Remove objects from the cache by exact path and/or by path prefix.",
                "cache",
                {
                    "200": _json_response("Removed from every disk.", "PurgeResult"),
                    "400": _error(
                        "The body is not valid JSON, gives neither paths nor prefixes, or has a "
                        "bad path."
                    ),
                    "413": _error("The body is larger than the admin API accepts (32 MiB)."),
                    "503": _error("A worker did not confirm the purge; nothing is lost, retry."),
                },
                description="At least one of paths or prefixes must be a non-empty list. "
                "Removed objects are fetched again from the origin on the next request.",
                requestBody={
                    "required": True,
                    "content": {JSON: {"schema": _ref("PurgeRequest")}},
                },
            )
        },
        "/admin/v1/contents": {
            "get": _operation(
                "listContents",
                "List cached objects under a path prefix, one page at a time.",
                "cache",
                {
                    "200": _json_response("One page of objects.", "ContentsPage"),
                    "400": bad_request(),
                },
                parameters=[
                    _query(
                        "prefix",
                        "Only objects whose path starts with this; must start with /v/.",
                        _prefix("Path prefix.") | {"default": "/v/"},
                    ),
                    *_page_parameters(),
                ],
            )
        },
        "/admin/v1/titles": {
            "get": _operation(
                "listTitles",
                "List the titles the cache holds, with bytes and files per title.",
                "cache",
                {"200": _json_response("One page of titles.", "TitlesPage"), "400": bad_request()},
                parameters=_page_parameters(),
            )
        },
        "/admin/v1/drain": {
            "post": _operation(
                "drain",
                "Take the appliance out of steering; it keeps serving open sessions.",
                "service",
                {"200": _json_response("The state after draining.", "StateResult")},
                description="/healthz answers 503 from now on, so load balancers and the "
                "control plane stop sending new players. Survives restarts until undrained.",
            )
        },
        "/admin/v1/undrain": {
            "post": _operation(
                "undrain",
                "Put a drained appliance back into service.",
                "service",
                {"200": _json_response("The state after undraining.", "StateResult")},
            )
        },
    }


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the admin API, for software ``version``; a fresh dict."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "vodedge appliance admin API",
            "version": version,
            "description": "Operate one vodedge edge-cache appliance: status, prefill, purge, "
            "contents and drain. Served on the admin listener; every call except /healthz, "
            "/metrics and this document needs `Authorization: Bearer <admin token>`. "
            'Errors are JSON: {"error": "<message>"}.',
        },
        "tags": [
            {"name": "service", "description": "Health, metrics, status and drain."},
            {"name": "prefill", "description": "Fetch files into the cache ahead of demand."},
            {"name": "cache", "description": "What the cache holds, and purging it."},
        ],
        "security": _security(True),
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token of the appliance configuration (admin.token).",
                }
            },
            "schemas": _schemas(),
        },
    }

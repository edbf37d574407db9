"""The origin API's OpenAPI 3.1 document, built in Python and served at /api/v1/openapi.json.

This is the contract of :mod:`origin.api.app`; the tests check that it names exactly the routes
the application has and that answers match it. Request schemas are closed
(``additionalProperties: false``, as the handlers refuse unknown fields); response schemas stay
open so that adding a field is not a breaking change. Every error body is
``{"error": "<code>", "detail": "<text>"}``, sometimes with more fields.
"""

from __future__ import annotations

from typing import Any

from origin.api.input import (
    DEFAULT_PAGE,
    DEFAULT_SEARCH_RESULTS,
    MAX_CURSOR_LEN,
    MAX_JSON_BODY,
    MAX_PAGE,
    MAX_QUERY_LEN,
    MAX_SEARCH_RESULTS,
    MAX_VIEWS_PER_CALL,
)
from origin.catalog.models import (
    JOB_STATES,
    MAX_DESCRIPTION,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TITLE,
    VIDEO_STATUSES,
)
from vodedge.openapi import JSON, operation
from vodedge.openapi import json_response as _json_body
from vodedge.openapi import number as _num
from vodedge.openapi import obj as _obj
from vodedge.openapi import query as _query
from vodedge.openapi import ref as _ref
from vodedge.openapi import string as _str

OPENAPI_VERSION = "3.1.0"
BINARY = "application/octet-stream"
SECURITY_SCHEME = "bearerAuth"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
NOT_BLANK = r"\S"
CONTENT_RANGE_PATTERN = r"^bytes [0-9]{1,20}-[0-9]{1,20}/[0-9]{1,20}$"


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (JSON Schema 2020-12: a type list)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema | {"type": [schema["type"], "null"]}


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": description, **extra}


def _time(description: str) -> dict[str, Any]:
    return _num(description + " (unix seconds)")


def _array(description: str, items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items, **extra}


def _title() -> dict[str, Any]:
    return _str("Title shown to viewers.", minLength=1, maxLength=MAX_TITLE, pattern=NOT_BLANK)


def _description() -> dict[str, Any]:
    return _str("Longer text about the video.", maxLength=MAX_DESCRIPTION)


def _tags() -> dict[str, Any]:
    tag = _str("One tag.", minLength=1, maxLength=MAX_TAG_LEN, pattern=NOT_BLANK)
    return _array(f"Tags (at most {MAX_TAGS}); searched like the title.", tag, maxItems=MAX_TAGS)


def _status() -> dict[str, Any]:
    return _str(
        "PENDING: uploaded, waiting for the pipeline; SEGMENTED, TRANSCODING: in the pipeline; "
        "READY: published; FAILED: the pipeline gave up (see failure_reason).",
        enum=list(VIDEO_STATUSES),
    )


def _video_props() -> dict[str, Any]:
    return {
        "video_id": _str("Video identifier.", pattern=ID_PATTERN),
        "title": _str("Title."),
        "description": _str("Description."),
        "tags": _array("Tags.", {"type": "string"}),
        "status": _ref("VideoStatus"),
        "failure_reason": _null(
            _str(
                "Why the pipeline failed; null unless FAILED. Anonymous readers (api.public_read, "
                "no token) get a generic text."
            )
        ),
        "duration_s": _null(_num("Duration in seconds, once probed.")),
        "width": _null(_int("Display width in pixels, once probed.")),
        "height": _null(_int("Display height in pixels, once probed.")),
        "view_count": _int("Views counted so far."),
        "created_at": _time("When the video was created"),
        "updated_at": _time("Last change of status or description; views do not count"),
        "published_at": _null(_time("When it became READY")),
        "deleted_at": _null(_time("When it was deleted; null for a live video")),
    }


def _upload_props() -> dict[str, Any]:
    return {
        "upload_id": _str("Upload identifier; the video gets the same id.", pattern=ID_PATTERN),
        "upload_url": _str("Path of this upload: PUT parts here, HEAD for the offset."),
        "status": _str(
            "open: receiving bytes; complete: the video exists; aborted: closed, bytes removed.",
            enum=["open", "complete", "aborted"],
        ),
        "size": _int("Declared size in bytes."),
        "received": _int("Bytes received and stored; the next part starts here."),
        "sha256": _null(_str("Declared SHA-256 (hex), checked at completion.")),
        "sha256_actual": _null(_str("SHA-256 of the received file, once complete.")),
        "title": _str("Title the video will get."),
        "description": _str("Description the video will get."),
        "tags": _array("Tags the video will get.", {"type": "string"}),
        "video_id": _null(_str("The video completion created; null before.")),
        "video_url": _null(_str("Path of that video in this API; null before.")),
        "created_at": _time("When the upload was created"),
        "updated_at": _time("Last change"),
    }


def _counts() -> dict[str, Any]:
    return _obj(
        "Jobs of one stage by state.",
        {
            "queued": _int("Waiting for a worker (or for their retry time)."),
            "leased": _int("Running on a worker."),
            "done": _int("Finished."),
            "failed": _int("Failed for good."),
            "total": _int("All jobs of the stage so far."),
        },
    )


def _job() -> dict[str, Any]:
    entry = _obj(
        "One failed attempt.",
        {
            "attempt": _int("Attempt number, from 1."),
            "worker": _str("Worker that ran it."),
            "error": _str("What went wrong (the end of the tool's stderr)."),
            "at": _time("When"),
        },
        required=["error"],
    )
    return _obj(
        "One pipeline job.",
        {
            "job_id": _int("Job identifier."),
            "kind": _str("Stage: probe, analyse, encode_chunk, package, publish..."),
            "key": _str("Names the work, unique per video."),
            "state": _str("Where the job is.", enum=list(JOB_STATES)),
            "attempts": _int("Attempts so far."),
            "max_attempts": _int("Attempts before the job fails for good."),
            "not_before": _time("Earliest start of the next attempt"),
            "lease_expires_at": _null(_time("End of the running attempt's lease")),
            "last_error": _null(_str("Error of the last failed attempt.")),
            "errors": _array("Every failed attempt, oldest first.", entry),
            "created_at": _time("When it was enqueued"),
            "updated_at": _time("Last change"),
        },
    )


def _schemas() -> dict[str, Any]:
    video = _obj("A video and where it is in the pipeline.", _video_props())
    upload = _obj("A resumable upload.", _upload_props())
    upload_answer = _obj(
        "The upload after the request; once complete, with its video.",
        _upload_props() | {"video": _ref("Video")},
        required=list(_upload_props()),
    )
    rendition = _obj(
        "One published rendition, as the packager measured it.",
        {
            "name": _str("Directory name in the published layout, e.g. h264-720p."),
            "kind": _str("What it carries.", enum=["video", "audio", "subtitle"]),
            "codec": _str("Short codec name: h264, hevc, av1, aac, webvtt."),
            "width": _null(_int("Pixels.")),
            "height": _null(_int("Pixels.")),
            "bitrate_bps": _null(_int("Peak bandwidth (HLS BANDWIDTH).")),
            "average_bitrate_bps": _null(_int("HLS AVERAGE-BANDWIDTH.")),
            "codecs_string": _null(_str("RFC 6381 codecs string.")),
            "language": _null(_str("BCP 47 language of audio and subtitles.")),
        },
    )
    file = _obj(
        "One published file: the unit of placement and prefill.",
        {
            "path": _str("Object path /v/{video_id}/...", pattern=r"^/v/[A-Za-z0-9_-]{1,64}/"),
            "size": _int("Bytes."),
            "rendition": _null(_str("Rendition it belongs to; null for playlists, thumbnails.")),
        },
    )
    detail = _obj(
        "A video with its renditions and published files (empty until READY).",
        _video_props()
        | {
            "renditions": _array("Renditions, video first, best first.", _ref("Rendition")),
            "files": _array("Published files in path order.", _ref("PublishedFile")),
        },
    )
    return {
        "Error": _obj(
            "Every error answer; some carry more fields (received, size, expected, actual).",
            {
                "error": _str("Short stable code: not_found, offset_mismatch, too_large..."),
                "detail": _str("What is wrong, for people."),
            },
        ),
        "VideoStatus": _status(),
        "Video": video,
        "VideoDetail": detail,
        "Rendition": rendition,
        "PublishedFile": file,
        "VideoPage": _obj(
            "One page of videos in (updated_at, video_id) order.",
            {
                "videos": _array("Videos.", _ref("Video")),
                "next_cursor": _null(_str("Pass as cursor for the next page; null on the last.")),
            },
        ),
        "VideoPatch": {
            **_obj(
                "Descriptive fields to change; at least one.",
                {"title": _title(), "description": _description(), "tags": _tags()},
                closed=True,
                required=[],
            ),
            "minProperties": 1,
        },
        "DeletedVideo": _obj(
            "What a delete removed.",
            {
                "video_id": _str("The video."),
                "deleted": {"type": "boolean", "description": "Always true."},
                "media_removed": {
                    "type": "boolean",
                    "description": "False when no published files were on disk.",
                },
                "files": _array(
                    "Files it had published: purge them from the fleet.", _ref("PublishedFile")
                ),
            },
        ),
        "StageCounts": _counts(),
        "Job": _job(),
        "Progress": _obj(
            "Where a video is in the pipeline.",
            {
                "video_id": _str("The video."),
                "status": _ref("VideoStatus"),
                "failure_reason": _null(_str("Why it failed; null unless FAILED.")),
                "percent": _num(
                    "Jobs done of those enqueued so far, 0..100; 100 only when READY. Later "
                    "stages add jobs, so it can move back.",
                    minimum=0,
                    maximum=100,
                ),
                "stage": _null(_str("Kind of the oldest unfinished job; null if none.")),
                "stages": {
                    "type": "object",
                    "description": "Job counts per stage (kind), in pipeline order.",
                    "additionalProperties": _ref("StageCounts"),
                },
                "jobs": _array("Every job in enqueue order.", _ref("Job")),
            },
        ),
        "ViewsRequest": _obj(
            "Views to add (1 if the body is empty).",
            {"count": {"type": "integer", "minimum": 1, "maximum": MAX_VIEWS_PER_CALL}},
            closed=True,
            required=[],
        ),
        "ViewCount": _obj(
            "The count after adding.",
            {"video_id": _str("The video."), "view_count": _int("Views so far.")},
        ),
        "SearchResult": _obj(
            "Matches, best first.",
            {
                "query": _str("The query as given."),
                "hits": _array(
                    "Matching live videos.",
                    _obj(
                        "One match.",
                        {
                            "score": _num("bm25 with column weights; lower is better."),
                            "video": _ref("Video"),
                        },
                    ),
                ),
            },
        ),
        "NewUpload": _obj(
            "An upload to create: the file's size and what the video will be called.",
            {
                "title": _title(),
                "description": _description(),
                "tags": _tags(),
                "size": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Bytes of the whole file; at most api.max_upload_size.",
                },
                "sha256": _str(
                    "SHA-256 of the whole file, hex: completion checks the received bytes "
                    "against it.",
                    pattern=SHA256_PATTERN,
                ),
            },
            closed=True,
            required=["title", "size", "sha256"],
        ),
        "Upload": upload,
        "UploadAnswer": upload_answer,
        "OpenApiDocument": {
            "type": "object",
            "description": "This OpenAPI 3.1 document.",
            "required": ["openapi", "info", "paths"],
        },
    }


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json_body(description, "Error", **extra)


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    security: str = "token",
    catalog: bool = True,
    description: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``security``: "token", "public_read" (token unless api.public_read) or "open"."""
    schemes: dict[str, list[dict[str, list[str]]]] = {
        "open": [],
        "public_read": [{SECURITY_SCHEME: []}, {}],
        "token": [{SECURITY_SCHEME: []}],
    }
    if security != "open":
        responses = responses | {
            "401": _error(
                "Missing or wrong bearer token.",
                headers={"WWW-Authenticate": _header("Bearer challenge.", {"type": "string"})},
            )
        }
    if catalog:
        responses = responses | {
            "503": _error(
                "The catalog database is busy or unavailable; retry later.",
                headers={"Retry-After": _header("Seconds.", {"type": "integer"})},
            )
        }
    return operation(
        operation_id,
        summary,
        tag,
        responses,
        security=schemes[security],
        description=description,
        **extra,
    )


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }


def _json_request(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": _ref(schema)}}}


def _bad(what: str = "The request is invalid; detail says what is wrong.") -> dict[str, Any]:
    return _error(what)


def _too_large_json() -> dict[str, Any]:
    return _error(f"The JSON body is over {MAX_JSON_BODY} bytes.")


def _upload_paths() -> dict[str, Any]:
    offset_headers = {
        "Upload-Offset": _header("Bytes received: resume here.", {"type": "integer"}),
        "Upload-Length": _header("Declared size.", {"type": "integer"}),
    }
    no_upload = _error("No such upload.")
    conflict = _error(
        "The part does not start at the received offset (the body has received, and the "
        "Upload-Offset header says where to resume), another request is writing the upload, or "
        "the upload was aborted."
    )
    gone = _error("The upload's bytes were lost on the origin; start a new upload.")
    mismatch = _error("The file's SHA-256 is not the declared one; the upload is aborted.")
    full = _error("The origin's upload disk is full.")
    answer = _json_body(
        "The upload; complete (with its video) once the last byte is in.",
        "UploadAnswer",
        headers=offset_headers,
    )
    return {
        "/uploads": {
            "post": _operation(
                "createUpload",
                "Start a resumable upload of one video file.",
                "uploads",
                {
                    "201": _json_body(
                        "Created; PUT the bytes to upload_url.",
                        "Upload",
                        headers={"Location": _header("upload_url.", {"type": "string"})},
                    ),
                    "400": _bad(),
                    "413": _error("size is over api.max_upload_size, or the body is too large."),
                },
                requestBody=_json_request("NewUpload"),
            )
        },
        "/uploads/{upload_id}": {
            "parameters": [_path_id("upload_id", "Upload identifier from createUpload.")],
            "get": _operation(
                "getUpload",
                "The upload: bytes received, status, and its video once complete.",
                "uploads",
                {"200": _json_body("The upload.", "Upload"), "400": _bad(), "404": no_upload},
            ),
            "head": _operation(
                "getUploadOffset",
                "Where to resume: the Upload-Offset header.",
                "uploads",
                {
                    "200": {"description": "The offset in headers.", "headers": offset_headers},
                    "400": {"description": "Bad upload id."},
                    "404": {"description": "No such upload."},
                },
            ),
            "put": _operation(
                "putUploadPart",
                "Send bytes: one part (Content-Range), or the whole file (no Content-Range).",
                "uploads",
                {
                    "200": answer,
                    "400": _bad("Bad Content-Range, or Content-Length differs from it."),
                    "404": no_upload,
                    "409": conflict,
                    "410": gone,
                    "413": _error("The body is longer than its part; none of this part was kept."),
                    "422": mismatch,
                    "507": full,
                },
                description="A part starts at the upload's received offset. The body streams "
                "to disk; if the connection drops, the bytes that arrived are kept and HEAD "
                "tells where to resume. The part that ends the file completes the upload.",
                parameters=[
                    {
                        "name": "Content-Range",
                        "in": "header",
                        "required": False,
                        "description": "bytes FIRST-LAST/SIZE (SIZE as declared); omit to send "
                        "the whole file from byte 0.",
                        "schema": {"type": "string", "pattern": CONTENT_RANGE_PATTERN},
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
                },
            ),
            "delete": _operation(
                "abortUpload",
                "Abort the upload and remove its bytes.",
                "uploads",
                {
                    "200": _json_body("The aborted upload.", "Upload"),
                    "400": _bad(),
                    "404": no_upload,
                    "409": _error("The upload is complete already."),
                },
            ),
        },
        "/uploads/{upload_id}/complete": {
            "parameters": [_path_id("upload_id", "Upload identifier from createUpload.")],
            "post": _operation(
                "completeUpload",
                "Complete an upload whose bytes are all in (idempotent).",
                "uploads",
                {
                    "200": answer,
                    "400": _bad(),
                    "404": no_upload,
                    "409": conflict,
                    "410": gone,
                    "422": mismatch,
                    "507": full,
                },
                description="Checks the SHA-256, moves the file to the sources, creates the "
                "PENDING video (with the upload's id) and queues its pipeline.",
            ),
        },
    }


def _video_paths() -> dict[str, Any]:
    no_video = _error("No such video (or it was deleted).")
    video_id = [_path_id("video_id", "Video identifier.")]
    status_query = _query("status", "Only videos in this status.", _ref("VideoStatus"))
    return {
        "/videos": {
            "get": _operation(
                "listVideos",
                "List videos, oldest change first; page with next_cursor.",
                "catalog",
                {"200": _json_body("One page.", "VideoPage"), "400": _bad()},
                security="public_read",
                description="The order (updated_at, video_id) suits an incremental sync: pass "
                "updated_since, and with include_deleted learn of deletions too.",
                parameters=[
                    status_query,
                    _query(
                        "updated_since",
                        "Only videos changed at or after this: unix seconds or RFC 3339.",
                        {"type": "string", "examples": ["1718000000", "2024-06-10T06:13:20Z"]},
                    ),
                    _query(
                        "limit",
                        f"Videos per page (1 to {MAX_PAGE}).",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE,
                            "default": DEFAULT_PAGE,
                        },
                    ),
                    _query(
                        "cursor",
                        "next_cursor of the previous page.",
                        {"type": "string", "maxLength": MAX_CURSOR_LEN},
                    ),
                    _query(
                        "include_deleted",
                        "Include tombstones of deleted videos (deleted_at set).",
                        {"type": "boolean", "default": False},
                    ),
                ],
            )
        },
        "/videos/{video_id}": {
            "parameters": video_id,
            "get": _operation(
                "getVideo",
                "A video with its renditions and published files.",
                "catalog",
                {"200": _json_body("The video.", "VideoDetail"), "400": _bad(), "404": no_video},
                security="public_read",
            ),
            "patch": _operation(
                "updateVideo",
                "Change title, description or tags.",
                "catalog",
                {
                    "200": _json_body("The video after the change.", "Video"),
                    "400": _bad(),
                    "404": no_video,
                    "413": _too_large_json(),
                },
                requestBody=_json_request("VideoPatch"),
            ),
            "delete": _operation(
                "deleteVideo",
                "Delete a video: tombstone in the catalog, files removed from storage.",
                "catalog",
                {
                    "200": _json_body("Deleted (again, for a deleted video).", "DeletedVideo"),
                    "400": _bad(),
                    "404": no_video,
                    "500": _error("The files could not be removed; retry the delete."),
                },
            ),
        },
        "/videos/{video_id}/jobs": {
            "parameters": video_id,
            "get": _operation(
                "getVideoJobs",
                "Pipeline progress: status, percent, counts per stage, every job and its errors.",
                "pipeline",
                {"200": _json_body("Progress.", "Progress"), "400": _bad(), "404": no_video},
            ),
        },
        "/videos/{video_id}/rerun": {
            "parameters": video_id,
            "post": _operation(
                "rerunVideo",
                "Run the pipeline of a FAILED video again, from the probe.",
                "pipeline",
                {
                    "200": _json_body("The video, PENDING again.", "Video"),
                    "400": _bad(),
                    "404": no_video,
                    "409": _error("The video is not FAILED."),
                },
            ),
        },
        "/videos/{video_id}/views": {
            "parameters": video_id,
            "post": _operation(
                "addVideoViews",
                "Count views of a video.",
                "catalog",
                {
                    "200": _json_body("The new count.", "ViewCount"),
                    "400": _bad(),
                    "404": no_video,
                    "413": _too_large_json(),
                },
                requestBody=_json_request("ViewsRequest", required=False),
            ),
        },
        "/search": {
            "get": _operation(
                "searchVideos",
                "Full-text search of titles, descriptions and tags (every word must match).",
                "catalog",
                {"200": _json_body("Matches, best first.", "SearchResult"), "400": _bad()},
                security="public_read",
                parameters=[
                    _query(
                        "q",
                        "Words to look for.",
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_QUERY_LEN,
                            "pattern": NOT_BLANK,
                        },
                        required=True,
                    ),
                    _query(
                        "limit",
                        f"At most this many hits (1 to {MAX_SEARCH_RESULTS}).",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_SEARCH_RESULTS,
                            "default": DEFAULT_SEARCH_RESULTS,
                        },
                    ),
                    status_query,
                ],
            )
        },
    }


def _paths() -> dict[str, Any]:
    return {
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This API description (OpenAPI 3.1).",
                "service",
                {"200": _json_body("The OpenAPI document.", "OpenApiDocument")},
                security="open",
                catalog=False,
            )
        },
        **_upload_paths(),
        **_video_paths(),
    }


def document(version: str, server: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the origin API for software ``version``; a fresh dict.
    Paths are relative to ``server`` (the API's mount point)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "vodedge origin API",
            "version": version,
            "description": "Upload videos (resumable), follow their encode pipeline, and read "
            "the catalog the control plane syncs from. Every call except this document needs "
            "`Authorization: Bearer <token>` (api.tokens); with api.public_read the catalog "
            'reads are open. Errors are JSON: {"error": "<code>", "detail": "<text>"}.',
        },
        "servers": [{"url": server}],
        "tags": [
            {"name": "uploads", "description": "Resumable uploads of source files."},
            {"name": "catalog", "description": "Videos, their files, search and views."},
            {"name": "pipeline", "description": "Encode progress and re-runs."},
            {"name": "service", "description": "This document."},
        ],
        "security": [{SECURITY_SCHEME: []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the origin's API tokens (api.tokens).",
                }
            },
            "schemas": _schemas(),
        },
    }

"""The API's error answers: one exception, JSON bodies, and the catalog's errors mapped to them.

Every error body is ``{"error": "<code>", "detail": "<text for people>"}``, sometimes with more
fields (``received`` on an offset conflict, so that the client can resume). ``error`` is a short
stable code that clients may branch on; ``detail`` may change wording.

```
ApiError(status, code, detail)       raised by handlers and input rules, answered as JSON
catalog errors, mapped by from_catalog:
  NotFound -> 404 not_found · Conflict -> 409 conflict · Invalid -> 400 invalid
  CatalogError -> 503 unavailable (with Retry-After: the database is busy or broken)
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from origin.catalog import CatalogError, Conflict, Invalid, NotFound

RETRY_AFTER_S = 2
"""Retry-After of a 503: the catalog's busy timeout has already been waited out once."""


class ApiError(Exception):
    """An answer other than success; ``extra`` fields join the JSON body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra
        self.close_connection = False
        """Close the connection after the answer (a request body may be left unread)."""

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


def bad_request(detail: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, detail)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def error_response(e: ApiError) -> web.Response:
    response = json_response(e.body(), e.status, e.headers)
    if e.close_connection:
        response.force_close()
    return response


def from_catalog(e: CatalogError) -> ApiError:
    """The answer for a catalog error (see the module docstring)."""
    if isinstance(e, NotFound):
        return ApiError(404, "not_found", str(e))
    if isinstance(e, Conflict):
        return ApiError(409, "conflict", str(e))
    if isinstance(e, Invalid):
        return ApiError(400, "invalid", str(e))
    return ApiError(
        503,
        "unavailable",
        "the catalog database is busy or unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )

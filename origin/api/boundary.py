"""The two hops out of a handler: a catalog call in a worker thread with its errors mapped to
answers, and a JSON request body read with its size bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from origin.api.errors import ApiError, from_catalog
from origin.api.input import MAX_JSON_BODY, decode_json
from origin.catalog import CatalogError

log = logging.getLogger("origin.api")

P = ParamSpec("P")
T = TypeVar("T")


async def run_catalog(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` off the event loop; catalog errors leave as :class:`ApiError`."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except CatalogError as e:
        answer = from_catalog(e)
        if answer.status >= 500:
            log.error("catalog unavailable", extra={"error": str(e)})
        raise answer from e


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; with ``optional``, an empty body is ``{}``."""
    declared = request.content_length
    if declared is not None and declared > MAX_JSON_BODY:
        raise _too_large()
    raw = bytearray()
    while len(raw) <= MAX_JSON_BODY:
        chunk = await request.content.read(MAX_JSON_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_JSON_BODY:
        raise _too_large()
    if optional and not raw.strip():
        return {}
    return decode_json(bytes(raw))


def _too_large() -> ApiError:
    error = ApiError(413, "too_large", f"a JSON body is at most {MAX_JSON_BODY} bytes")
    error.close_connection = True
    return error

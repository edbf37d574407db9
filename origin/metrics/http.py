"""The HTTP side of the metrics: the ``/metrics`` handler and the request-counting middleware.

``/metrics`` renders its registry with ``prometheus_client.generate_latest`` in a worker
thread: custom collectors (the catalog's) run SQL while they collect, and the scrape must not
stall the event loop. The answer carries no token check; operators keep the port off public
networks, as for ``/v/`` (docs/origin.md, "Operating").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from origin.metrics.serve import UNMATCHED, ServeMetrics


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """``GET /metrics``: the text exposition of ``registry``, rendered off the event loop."""

    async def scrape(_request: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return scrape


def route_template(request: web.Request) -> str:
    """The matched route's path template (``/api/v1/uploads/{upload_id}``), never the path
    itself: labels must not grow with ids."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def count_requests(
    metrics: ServeMetrics, clock: Callable[[], float] = time.perf_counter
) -> Middleware:
    """A middleware recording every answered request: route template, method, status class and
    duration. A handler's exception counts as 500 (aiohttp answers it so); a cancelled one
    (the client went away) is not counted."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock()
        status: int | None = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = None
            raise
        finally:
            if status is not None:
                elapsed = clock() - started
                metrics.request(route_template(request), request.method, status, elapsed)

    return middleware

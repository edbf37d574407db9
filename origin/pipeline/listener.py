"""The worker's own small HTTP listener (``pipeline.metrics_listen``, ``--metrics-listen``).

```
GET /metrics   the worker's registry (origin.metrics.worker, process CPU and memory)
GET /healthz   200 "ok" while the worker takes jobs; 503 "stopping" once its shutdown began
```

No token, like ``serve``'s ``/metrics``: bind it to loopback or a management network.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry

from origin.metrics.http import metrics_handler


def make_app(registry: CollectorRegistry, stopping: asyncio.Event) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if stopping.is_set():
            return web.Response(status=503, text="stopping\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/healthz", healthz)
    return app

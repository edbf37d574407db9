"""The origin's Prometheus metrics: definitions on an injected registry, the catalog collector,
and the HTTP handler that renders them.

- :mod:`origin.metrics.serve`: ``vodedge-origin serve`` (requests, bytes, uploads, catalog).
- :mod:`origin.metrics.catalog`: the job backlog and videos by status, read at scrape time.
- :mod:`origin.metrics.worker`: ``vodedge-origin worker`` (jobs by outcome, durations, tool
  timeouts, webhooks).
- :mod:`origin.metrics.http`: ``GET /metrics`` (rendered off the event loop) and the
  request-counting middleware.

Names start with ``vodedge_origin_``; counters end in ``_total``, sizes in ``_bytes``, times in
``_seconds``. docs/origin.md ("Operating") lists them with the alerts worth having.
"""

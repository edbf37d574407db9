"""What ``vodedge-origin serve`` counts: HTTP requests, bytes served and received, upload
refusals and stalls, catalog errors.

Every metric lives on the registry given to :class:`ServeMetrics` (never the global one), so a
test or a second app in one process gets its own. Handlers call the recording methods; they
decide nothing here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

NS = "vodedge_origin"

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted under their own name; any other is ``other`` (clients choose the method,
and a label must not grow with what clients send)."""

UNMATCHED = "unmatched"
"""The ``route`` label of a request no route matched (answered 404 or 405)."""

REQUEST_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 300.0),  # an upload part or a large object on a slow link
)

UPLOAD_REFUSALS = (
    "too_large",
    "checksum_mismatch",
    "offset_mismatch",
    "aborted",
    "upload_lost",
    "bad_range",
    "insufficient_storage",
)
"""Refusal reasons (the API's error codes) present from the start at 0; others appear when
first counted."""


def status_class(status: int) -> str:
    """``2xx`` … ``5xx``: the label of a status (codes within a class are in the access log)."""
    return f"{status // 100}xx"


class ServeMetrics:
    """The metrics of one ``serve`` process, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        """Where these metrics are registered (``/metrics`` renders it)."""
        self.requests = Counter(
            f"{NS}_http_requests_total",
            "HTTP requests answered, by route template, method and status class.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            f"{NS}_http_request_duration_seconds",
            "Time from a request's head to its handler's end (for /v/ objects: the last byte "
            "handed to the kernel), by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.served_bytes = Counter(
            f"{NS}_served_bytes_total",
            "Body bytes of published files sent under /v/.",
            registry=registry,
        )
        self.upload_bytes = Counter(
            f"{NS}_upload_received_bytes_total",
            "Upload bytes received and recorded (fsynced, counted in the upload's offset).",
            registry=registry,
        )
        self.uploads_refused = Counter(
            f"{NS}_uploads_refused_total",
            "Upload requests refused, by reason (the API error code of the answer).",
            ["reason"],
            registry=registry,
        )
        self.upload_idle_timeouts = Counter(
            f"{NS}_upload_idle_timeouts_total",
            "Upload parts that sent nothing for api.part_idle_timeout_s (ended like a drop).",
            registry=registry,
        )
        self.catalog_errors = Counter(
            f"{NS}_catalog_errors_total",
            "Catalog calls of the API that failed on the database (busy past its timeout, "
            "unreadable), answered 503.",
            registry=registry,
        )
        for reason in UPLOAD_REFUSALS:
            self.uploads_refused.labels(reason)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, status_class(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def served(self, nbytes: int) -> None:
        if nbytes:
            self.served_bytes.inc(nbytes)

    def upload_received(self, nbytes: int) -> None:
        if nbytes:
            self.upload_bytes.inc(nbytes)

    def upload_refused(self, reason: str) -> None:
        self.uploads_refused.labels(reason).inc()

    def upload_idle_timeout(self) -> None:
        self.upload_idle_timeouts.inc()

    def catalog_error(self) -> None:
        self.catalog_errors.inc()

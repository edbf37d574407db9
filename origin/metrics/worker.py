"""What ``vodedge-origin worker`` counts: jobs by outcome, their durations, tool timeouts,
webhook deliveries, the jobs running now and catalog calls that failed.

Outcomes of a job attempt (:data:`JobOutcome`), as the worker decides them
(:mod:`origin.pipeline.worker`)::

    done                    completed and recorded (its follow-up jobs enqueued)
    retried                 failed; queued again after back-off
    failed                  failed for good (its video is FAILED)
    lost_lease              the lease ran out (or was taken) before the outcome was recorded;
                            another worker redoes the job
    released_on_shutdown    cancelled by a shutdown and given back without spending the attempt
    cancelled_on_shutdown   cancelled by a shutdown, but giving it back failed: the lease expires
    unrecorded              failed, and the catalog could not record it: the lease expires

Every metric lives on the registry given to :class:`WorkerMetrics` (never the global one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from origin.metrics.serve import NS
from origin.pipeline.webhook import WebhookOutcome

JobOutcome = Literal[
    "done",
    "retried",
    "failed",
    "lost_lease",
    "released_on_shutdown",
    "cancelled_on_shutdown",
    "unrecorded",
]
JOB_OUTCOMES: tuple[JobOutcome, ...] = get_args(JobOutcome)

WEBHOOK_OUTCOMES: tuple[WebhookOutcome, ...] = get_args(WebhookOutcome)

CatalogOperation = Literal["claim", "extend", "complete", "fail", "release", "pending"]

JOB_BUCKETS = (
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
    *(3600.0, 7200.0),  # packaging a long title in one job
)


class WorkerMetrics:
    """The metrics of one worker process, registered on ``registry``; ``kinds`` (the job
    kinds the worker runs) are present from the start at 0, so rates exist before the first
    job."""

    def __init__(self, registry: CollectorRegistry, kinds: Iterable[str] = ()) -> None:
        self.jobs = Counter(
            f"{NS}_worker_jobs_total",
            "Job attempts that ended, by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            f"{NS}_worker_job_duration_seconds",
            "Time from starting a claimed job to its outcome, by kind.",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.tool_timeouts = Counter(
            f"{NS}_worker_tool_timeouts_total",
            "Tools (ffmpeg, ffprobe, packager) killed at their timeout, by the job kind (the "
            "pipeline step) that ran them.",
            ["kind"],
            registry=registry,
        )
        self.webhooks = Counter(
            f"{NS}_worker_webhook_deliveries_total",
            "video.ready notifications, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.running = Gauge(
            f"{NS}_worker_jobs_running", "Jobs this worker is running now.", registry=registry
        )
        self.catalog_errors = Counter(
            f"{NS}_worker_catalog_errors_total",
            "Catalog calls of the worker that failed on the database, by operation.",
            ["operation"],
            registry=registry,
        )
        for kind in kinds:
            self.job_seconds.labels(kind)
            self.tool_timeouts.labels(kind)
            for outcome in JOB_OUTCOMES:
                self.jobs.labels(kind, outcome)
        for webhook in WEBHOOK_OUTCOMES:
            self.webhooks.labels(webhook)
        for operation in get_args(CatalogOperation):
            self.catalog_errors.labels(operation)

    def job_finished(self, kind: str, outcome: JobOutcome, seconds: float) -> None:
        self.jobs.labels(kind, outcome).inc()
        self.job_seconds.labels(kind).observe(seconds)

    def tool_timeout(self, kind: str) -> None:
        self.tool_timeouts.labels(kind).inc()

    def webhook(self, outcome: WebhookOutcome) -> None:
        self.webhooks.labels(outcome).inc()

    def catalog_error(self, operation: CatalogOperation) -> None:
        self.catalog_errors.labels(operation).inc()

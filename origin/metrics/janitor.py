"""What ``serve``'s janitor (:mod:`origin.janitor`) counts: what it removed, what it could not
remove, and how long its runs take.

On the registry given to :class:`JanitorMetrics`, like every origin metric.
"""

from __future__ import annotations

from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram

from origin.metrics.serve import NS

Removed = Literal["upload", "work_dir", "staging_dir"]
"""``upload``: an open upload aborted and its partial file removed; ``work_dir``:
``{pipeline.work_dir}/{video_id}`` of an old FAILED video; ``staging_dir``: a leftover
directory under ``{media.root}/.staging``."""
REMOVED: tuple[str, ...] = get_args(Removed)

ErrorStep = Literal["survey", "upload", "work_dir", "staging_dir"]
"""Where an error stopped the janitor: ``survey`` (the whole run: the catalog or a directory
listing failed) or the removal of one item of a kind."""
ERROR_STEPS: tuple[str, ...] = get_args(ErrorStep)

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class JanitorMetrics:
    """The janitor's metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.removed = Counter(
            f"{NS}_janitor_removed_total",
            "Stale things the janitor removed, by what: upload (aborted, partial file removed), "
            "work_dir (of a video FAILED past pipeline.failed_work_expiry_s), staging_dir.",
            ["what"],
            registry=registry,
        )
        self.errors = Counter(
            f"{NS}_janitor_errors_total",
            "Janitor errors, by step: survey (the run stopped) or the kind of item it could "
            "not remove (logged; tried again at the next run).",
            ["step"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            f"{NS}_janitor_run_duration_seconds",
            "Duration of one janitor run, failed ones included.",
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        for what in REMOVED:
            self.removed.labels(what)
        for step in ERROR_STEPS:
            self.errors.labels(step)

    def removed_items(self, what: Removed, n: int) -> None:
        if n:
            self.removed.labels(what).inc(n)

    def error(self, step: ErrorStep, n: int = 1) -> None:
        if n:
            self.errors.labels(step).inc(n)

    def run(self, seconds: float) -> None:
        self.run_seconds.observe(seconds)

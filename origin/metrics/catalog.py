"""Gauges read from the catalog at scrape time: the job backlog and videos by status.

:class:`CatalogCollector` is a prometheus-client custom collector. Its :meth:`collect` makes
one catalog call (:meth:`origin.catalog.Catalog.stats`, a read snapshot of a few
milliseconds at 100k videos); it blocks, so ``/metrics`` renders the registry in a worker
thread (:func:`origin.metrics.http.metrics_handler`), never on the event loop. A catalog that
cannot be read gives ``vodedge_origin_catalog_up 0`` and no other catalog gauge, rather than
a failed scrape: the process metrics still arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from origin.catalog import Catalog, CatalogError
from origin.catalog.models import VIDEO_STATUSES
from origin.metrics.serve import NS

log = logging.getLogger("origin.metrics")

JOB_STATES = ("queued", "leased")


class CatalogCollector(Collector):
    """Reads ``catalog`` at every scrape; every known kind and status is present, 0 if none."""

    def __init__(self, catalog: Catalog, kinds: Iterable[str]) -> None:
        self._catalog = catalog
        self._kinds = tuple(kinds)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            f"{NS}_catalog_up", "1 if the last scrape could read the catalog, else 0."
        )
        try:
            stats = self._catalog.stats()
        except CatalogError as e:
            log.warning("cannot read the catalog for metrics", extra={"error": str(e)})
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        jobs = GaugeMetricFamily(
            f"{NS}_jobs",
            "Jobs queued (due or backing off) or leased, by kind and state; jobs of FAILED or "
            "deleted videos are left out (no worker takes them).",
            labels=["kind", "state"],
        )
        kinds = dict.fromkeys((*self._kinds, *(kind for kind, _ in stats.jobs)))
        for kind in kinds:
            for state in JOB_STATES:
                jobs.add_metric([kind, state], float(stats.jobs.get((kind, state), 0)))
        yield jobs
        wait = GaugeMetricFamily(
            f"{NS}_queue_oldest_wait_seconds",
            "How long the longest-waiting due job has been claimable; 0 when none is due.",
        )
        wait.add_metric([], stats.oldest_due_s)
        yield wait
        videos = GaugeMetricFamily(
            f"{NS}_videos", "Videos by status (deleted ones left out).", labels=["status"]
        )
        for status in dict.fromkeys((*VIDEO_STATUSES, *stats.videos)):
            videos.add_metric([status], float(stats.videos.get(status, 0)))
        yield videos

"""The encode worker: claims the pipeline's jobs from the catalog and runs their stages.

```
vodedge-origin worker -c FILE [--once] [--metrics-listen HOST:PORT]
python -m origin.pipeline.worker -c FILE [--once] [--metrics-listen HOST:PORT]   (the same)
```

A process runs ``pipeline.concurrency`` slots, each with its own worker id
``{host}:{pid}:{slot}`` (the queue wants one id per claiming thread). A slot loops:

1. claim the oldest due job of a kind it runs (:data:`STAGES`: every kind of
   :data:`~.jobs.KINDS`; other kinds are left to workers that know them), in a worker thread
   since the catalog is synchronous; nothing due: wait ``poll_s`` (or, with ``once``, exit
   if no job of those kinds is queued or leased anywhere);
2. run the job's stage as a task, while a lease keeper task extends the lease
   every ``lease_s / 3``;
3. record the outcome: ``complete`` with the stage's follow-up jobs, or ``fail`` as
   :func:`~.errors.classify` decides (retried with back-off, or failed for good with its video).

Lease lost (``extend`` answers False: the worker was paused or the database unreachable for
longer than the lease): the keeper cancels the stage, which kills its tool; nothing is recorded
and the stage's ``undo`` outputs are removed if it had already finished. Another worker redoes
the job; outputs are only ever renamed into place whole, so the redo cannot be corrupted.

Shutdown on SIGTERM/SIGINT, in bounded phases: stop claiming; let running jobs finish and be
recorded for up to ``grace_s``; then cancel them (their tools are killed) and give them back
to the queue without spending the attempt (``Catalog.release``; if that fails, their leases
expire), so that another worker redoes them. A second signal skips the wait.

Operation (:func:`main`): with ``pipeline.metrics_listen`` (or ``--metrics-listen``, which
overrides it so that workers on one machine get one port each) a small HTTP listener
(:mod:`.listener`) answers ``/metrics`` (:class:`~origin.metrics.worker.WorkerMetrics` and the
process's CPU and memory) and ``/healthz``. Under systemd (``Type=notify``) the worker sends
READY=1 once the catalog is open and the listener bound, WATCHDOG=1 pings from the event loop,
and STOPPING=1 when the shutdown starts (:mod:`vodedge.sdnotify`).

Exit codes: 0 after a shutdown, or with ``once`` when the queue has nothing left; 1 when the
worker cannot start (tools missing, catalog unusable, metrics address taken) or a slot crashed
on a bug; 2 for a bad command line or config file.

Errors, as the worker records them (:mod:`.errors`)::

    Rejected, ProbeRejected, NotFound   fail(permanent=True): the video is FAILED with the reason
    MediaError, OSError, anything else  fail(): retried after back-off up to max_attempts
    CancelledError                      nothing recorded: lease lost, or shutdown
    CatalogError around claim/extend/complete/fail
                                        logged; the slot carries on (the lease expires if the
                                        outcome could not be recorded, and the job is redone)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from origin import config as origin_config
from origin.catalog import Catalog, CatalogError, Job, RetryPolicy, SqliteCatalog
from origin.config import OriginConfig
from origin.media.tools import ToolNotFound, Tools, find_tools
from origin.metrics.serve import NS
from origin.metrics.worker import JobOutcome, WorkerMetrics
from origin.pipeline import analyse, encode, listener, notify, package, probe, publish
from origin.pipeline.errors import classify
from origin.pipeline.jobs import (
    ANALYSE,
    ENCODE_AUDIO,
    ENCODE_CHUNK,
    NOTIFY,
    PACKAGE,
    PUBLISH,
)
from origin.pipeline.stage import Context, Done, Stage
from origin.pipeline.start import PROBE
from origin.pipeline.webhook import Delivery
from origin.pipeline.workdir import remove_tree
from origin.serve import serving
from origin.storage import LocalStorage
from vodedge.configfile import ConfigError, parse_listen
from vodedge.logs import setup_logging
from vodedge.sdnotify import Notifier, ping_watchdog
from vodedge.tasks import TaskSet

log = logging.getLogger("origin.pipeline.worker")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

SHUTDOWN_GRACE_S = 30.0
"""Seconds running jobs get to finish after SIGTERM (systemd's stop timeout is 90 s)."""

LISTENER_SHUTDOWN_S = 1.0
"""Seconds a scrape in flight may take to finish when the worker stops."""

STAGES: Mapping[str, Stage] = {
    PROBE: probe.run,
    ANALYSE: analyse.run,
    ENCODE_CHUNK: encode.run_chunk,
    ENCODE_AUDIO: encode.run_audio,
    PACKAGE: package.run,
    PUBLISH: publish.run,
    NOTIFY: notify.run,
}


@dataclass(slots=True)
class Stats:
    """What one worker process did (logged when it stops; the metrics have it by kind)."""

    done: int = 0
    retried: int = 0
    """Attempts that failed and were queued again."""
    failed: int = 0
    """Jobs that failed for good (their videos are FAILED)."""
    lost: int = 0
    """Jobs dropped because their lease was lost."""
    webhook_failures: int = 0
    crashed: bool = False


class Worker:
    """The slots of one process, sharing one catalog connection."""

    def __init__(
        self,
        cfg: OriginConfig,
        catalog: Catalog,
        storage: LocalStorage,
        tools: Tools,
        *,
        name: str,
        once: bool = False,
        stages: Mapping[str, Stage] = STAGES,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.stats = Stats()
        self._metrics = metrics or WorkerMetrics(CollectorRegistry(), stages)
        self._catalog = catalog
        self._pipeline = cfg.pipeline
        self._name = name
        self._once = once
        self._stages = stages
        self._kinds = tuple(stages)
        self._ctx = Context(
            pipeline=cfg.pipeline,
            webhook=cfg.webhook,
            catalog=catalog,
            storage=storage,
            tools=tools,
            on_webhook=self._count_webhook,
        )

    def worker_ids(self) -> list[str]:
        return [f"{self._name}:{n}" for n in range(self._pipeline.concurrency)]

    async def run(
        self, stop: asyncio.Event, hurry: asyncio.Event, grace_s: float = SHUTDOWN_GRACE_S
    ) -> Stats:
        """Work until ``stop`` is set (or, with ``once``, the queue is empty); then let running
        jobs finish for up to ``grace_s`` (less if ``hurry`` is set) and cancel the rest."""
        slots = [
            asyncio.create_task(self._slot(worker_id, stop), name=f"slot {worker_id}")
            for worker_id in self.worker_ids()
        ]
        log.info(
            "worker started",
            extra={"workers": self.worker_ids(), "kinds": list(self._stages), "once": self._once},
        )
        try:
            await _until(stop, slots)
            running = [t for t in slots if not t.done()]
            if running:
                log.info(
                    "stopping: no new jobs; running jobs get a grace period",
                    extra={"running": len(running), "grace_s": grace_s},
                )
                await _until(hurry, running, timeout=grace_s)
        finally:
            for task in slots:
                task.cancel("worker shutting down")
            await asyncio.wait(slots)
        log.info("worker stopped", extra=asdict(self.stats))
        return self.stats

    def _count_webhook(self, delivery: Delivery) -> None:
        self._metrics.webhook(delivery.outcome)
        if not delivery.delivered:
            self.stats.webhook_failures += 1

    def _count(self, job: Job, outcome: JobOutcome, started: float) -> None:
        """Count how an attempt ended: in the metrics, and in the totals logged at the stop."""
        self._metrics.job_finished(job.kind, outcome, time.monotonic() - started)
        match outcome:
            case "done":
                self.stats.done += 1
            case "retried":
                self.stats.retried += 1
            case "failed":
                self.stats.failed += 1
            case "lost_lease":
                self.stats.lost += 1

    # -- one slot ------------------------------------------------------------------------------

    async def _slot(self, worker_id: str, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                job = await self._claim(worker_id)
                if job is not None and stop.is_set():
                    # Asked to stop while the claim ran: no new job starts (shutdown contract);
                    # the job goes back to the queue with its attempt unspent.
                    await self._release(worker_id, job)
                    break
                if job is not None:
                    await self._run_job(worker_id, job)
                elif self._once and await self._queue_empty():
                    return
                else:
                    await _until(stop, (), timeout=self._pipeline.poll_s)
        except Exception:
            log.exception("slot crashed; stopping the worker", extra={"worker": worker_id})
            self.stats.crashed = True
            stop.set()

    async def _claim(self, worker_id: str) -> Job | None:
        try:
            return await asyncio.to_thread(
                self._catalog.claim, worker_id, self._kinds, self._pipeline.lease_s
            )
        except CatalogError as e:
            self._metrics.catalog_error("claim")
            log.warning("cannot claim", extra={"worker": worker_id, "error": str(e)})
            return None

    async def _queue_empty(self) -> bool:
        try:
            return await asyncio.to_thread(self._catalog.pending_jobs, self._kinds) == 0
        except CatalogError as e:
            self._metrics.catalog_error("pending")
            log.warning("cannot count pending jobs", extra={"error": str(e)})
            return False

    async def _run_job(self, worker_id: str, job: Job) -> None:
        with self._metrics.running.track_inprogress():
            await self._attempt(worker_id, job)

    async def _attempt(self, worker_id: str, job: Job) -> None:
        fields: dict[str, Any] = {
            "worker": worker_id,
            "job_id": job.job_id,
            "video_id": job.video_id,
            "kind": job.kind,
            "key": job.key,
            "attempt": job.attempts,
        }
        log.info("job started", extra=fields)
        started = time.monotonic()
        stage = asyncio.create_task(
            self._stages[job.kind](self._ctx, job), name=f"{job.kind} {job.video_id} {job.key}"
        )
        keeper = asyncio.create_task(
            self._keep_lease(worker_id, job, stage), name=f"lease {job.job_id}"
        )
        try:
            done = await stage
        except asyncio.CancelledError:
            if _being_cancelled():
                # The stage has ended (its tool killed): give the job back without spending
                # the attempt, so that restarts during a long job do not use up its attempts.
                released = await self._release(worker_id, job)
                what = "given back to the queue" if released else "its lease will expire"
                log.warning(f"job cancelled by the shutdown; {what}", extra=fields)
                self._count(
                    job, "released_on_shutdown" if released else "cancelled_on_shutdown", started
                )
                raise
            self._count(job, "lost_lease", started)
            log.warning("lease lost; the stage was cancelled", extra=fields | _since(started))
            return
        except Exception as e:
            failed = await self._record_failure(worker_id, job, e, fields | _since(started))
            self._count(job, failed, started)
            return
        finally:
            await _stop(keeper)
        outcome = await self._record_done(worker_id, job, done, fields | _since(started))
        self._count(job, outcome, started)

    async def _release(self, worker_id: str, job: Job) -> bool:
        try:
            return await asyncio.to_thread(self._catalog.release, job.job_id, worker_id)
        except CatalogError as e:
            self._metrics.catalog_error("release")
            log.warning("cannot release the job", extra={"job_id": job.job_id, "error": str(e)})
            return False

    async def _keep_lease(self, worker_id: str, job: Job, stage: asyncio.Task[Done]) -> None:
        lease_s = self._pipeline.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                held = await asyncio.to_thread(self._catalog.extend, job.job_id, worker_id, lease_s)
            except CatalogError as e:
                # Two thirds of the lease are left: try again at the next tick.
                self._metrics.catalog_error("extend")
                log.warning(
                    "cannot extend the lease",
                    extra={"worker": worker_id, "job_id": job.job_id, "error": str(e)},
                )
                continue
            if not held:
                stage.cancel("lease lost")
                return

    async def _record_done(
        self, worker_id: str, job: Job, done: Done, fields: dict[str, Any]
    ) -> JobOutcome:
        try:
            recorded = await asyncio.to_thread(
                self._catalog.complete,
                job.job_id,
                worker_id,
                done.result,
                then=done.then,
                when_all_done=done.when_all_done,
            )
        except CatalogError as e:
            self._metrics.catalog_error("complete")
            log.error("cannot record the completion", extra=fields | {"error": str(e)})
            await self._undo(done)
            return await self._record_failure(worker_id, job, e, fields)
        if not recorded:
            log.warning("lease lost before the completion; output dropped", extra=fields)
            await self._undo(done)
            return "lost_lease"
        log.info("job done", extra=fields | {"next": [spec.key for spec in done.then[:5]]})
        return "done"

    async def _record_failure(
        self, worker_id: str, job: Job, exc: Exception, fields: dict[str, Any]
    ) -> JobOutcome:
        verdict = classify(exc)
        if verdict.tool_timeout:
            self._metrics.tool_timeout(job.kind)
        trace = None if verdict.expected else exc
        fields = fields | {"error": verdict.error, "permanent": verdict.permanent}
        try:
            failed = await asyncio.to_thread(
                self._catalog.fail,
                job.job_id,
                worker_id,
                verdict.error,
                permanent=verdict.permanent,
            )
        except CatalogError as e:
            self._metrics.catalog_error("fail")
            log.error("cannot record the failure", extra=fields | {"catalog_error": str(e)})
            return "unrecorded"
        if failed is None:
            log.warning("job failed after its lease was lost", extra=fields)
            return "lost_lease"
        if failed.state == "failed":
            log.error("job failed for good", extra=fields, exc_info=trace)
            return "failed"
        retry = {"retry_at": failed.not_before}
        log.warning("job failed; will retry", extra=fields | retry, exc_info=trace)
        return "retried"

    async def _undo(self, done: Done) -> None:
        for path in done.undo:
            await remove_tree(path)


async def _until(
    event: asyncio.Event,
    tasks: Sequence[asyncio.Task[Any]],
    timeout: float | None = None,  # noqa: ASYNC109 (a bounded wait, not a cancel scope)
) -> None:
    """Return when ``event`` is set, every one of ``tasks`` has ended, or ``timeout`` passed."""
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(event.wait())]
    if tasks:
        waiters.append(asyncio.create_task(asyncio.wait(tasks)))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.wait(waiters)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task and wait until it has ended (a cancellation of the caller still
    propagates: ``asyncio.wait`` raises it and never the task's own)."""
    task.cancel()
    await asyncio.wait([task])


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (rather than a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _since(started: float) -> dict[str, float]:
    return {"seconds": round(time.monotonic() - started, 3)}


# -- the process -----------------------------------------------------------------------------


def main(
    cfg: OriginConfig,
    *,
    once: bool = False,
    grace_s: float | None = None,
    metrics_listen: tuple[str, int] | None = None,
) -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT (or, with ``once``, until the queue
    has nothing left); return the exit code. ``grace_s`` defaults to
    ``pipeline.shutdown_grace_s``, ``metrics_listen`` to ``pipeline.metrics_listen``."""
    setup_logging("origin-worker", cfg.log.level)
    try:
        tools = find_tools()
    except ToolNotFound as e:
        log.error("cannot start: media tools missing", extra={"error": str(e)})
        return EXIT_FAILED
    try:
        catalog = SqliteCatalog.open(
            cfg.catalog.path,
            busy_timeout_s=cfg.catalog.busy_timeout_s,
            retry=RetryPolicy(base_s=cfg.pipeline.retry_base_s, max_s=cfg.pipeline.retry_max_s),
        )
    except CatalogError as e:
        log.error("cannot start: catalog unusable", extra={"error": str(e)})
        return EXIT_FAILED
    registry = CollectorRegistry()
    ProcessCollector(namespace=NS, registry=registry)
    metrics = WorkerMetrics(registry, STAGES)
    name = f"{socket.gethostname()}:{os.getpid()}"
    worker = Worker(
        cfg, catalog, LocalStorage(cfg.media.root), tools, name=name, once=once, metrics=metrics
    )
    process = WorkerProcess(
        worker,
        grace_s=cfg.pipeline.shutdown_grace_s if grace_s is None else grace_s,
        registry=registry,
        metrics_listen=metrics_listen or cfg.pipeline.metrics_listen,
        notifier=Notifier(),
    )
    with catalog, asyncio.Runner() as runner:
        return runner.run(process.run())


@dataclass
class WorkerProcess:
    """The worker's lifecycle around :meth:`Worker.run`: signals, the metrics listener and
    systemd's notify protocol."""

    worker: Worker
    grace_s: float
    registry: CollectorRegistry
    metrics_listen: tuple[str, int] | None
    notifier: Notifier

    async def run(self) -> int:
        stop, hurry = asyncio.Event(), asyncio.Event()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        async with contextlib.AsyncExitStack() as stack:
            if self.metrics_listen is not None:
                app = listener.make_app(self.registry, stop)
                listening = serving(app, (self.metrics_listen,), LISTENER_SHUTDOWN_S, None)
                try:
                    await stack.enter_async_context(listening)
                except OSError as e:
                    log.error("cannot start: metrics listener", extra={"error": str(e)})
                    return EXIT_FAILED
            tasks = TaskSet(log)
            stack.callback(self.notifier.close)
            stack.push_async_callback(tasks.cancel_all)  # before the close: exits run LIFO
            self.notifier.ready(f"running {len(self.worker.worker_ids())} job slots")
            tasks.spawn(ping_watchdog(self.notifier), name="watchdog")
            tasks.spawn(self._announce_stop(stop), name="announce stop")
            stats = await self.worker.run(stop, hurry, self.grace_s)
        return EXIT_FAILED if stats.crashed else EXIT_OK

    async def _announce_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.notifier.stopping(f"stopping: running jobs get {self.grace_s:g} s to finish")


def listen_address(value: str) -> tuple[str, int]:
    """argparse type of ``--metrics-listen``: ``host:port``."""
    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options after ``-c``, shared by ``vodedge-origin worker`` and
    ``python -m origin.pipeline.worker``."""
    parser.add_argument(
        "--once", action="store_true", help="exit when no job is queued or leased (tests)"
    )
    parser.add_argument(
        "--metrics-listen",
        type=listen_address,
        metavar="HOST:PORT",
        help="serve /metrics and /healthz here (overrides pipeline.metrics_listen)",
    )


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m origin.pipeline.worker", description="Run the origin's encode worker."
    )
    parser.add_argument("-c", "--config", required=True, type=Path, help="TOML config file")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = origin_config.load(args.config)
    except ConfigError as e:
        print(f"origin worker: {e}", file=sys.stderr)
        return EXIT_USAGE
    return main(cfg, once=args.once, metrics_listen=args.metrics_listen)


if __name__ == "__main__":
    raise SystemExit(cli())

"""Runs prefill jobs in the supervisor: one job at a time, in submission order.

Each file goes to the worker that owns its key (``/ctl/prefill``), which fills it through the
same single-flight fill players use: a player asking for the file meanwhile joins that fill
(and lifts its rate limit), and a prefill of a file a player is already filling just waits for
it. The job's byte rate is a :class:`~appliance.ratelimit.SharedRate` file every worker applies
to its upstream reads; ``concurrency`` lanes each keep one file in flight. Workers start no
prefill fetch while ``prefill.pause_at_player_fills`` player fills are in flight (players
first). Progress is persisted about once a second, so a restart resumes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from appliance import supmetrics as sm
from appliance.cache import owner_of
from appliance.config import PrefillConfig
from appliance.control import WorkerControl, WorkerUnavailable
from appliance.prefill import (
    Job,
    JobState,
    PrefillSpec,
    in_window,
    load_jobs,
    new_job_id,
    save_progress,
    save_spec,
)
from appliance.ratelimit import SharedRate

log = logging.getLogger("appliance.prefill")

KEEP_FINISHED = 100
"""Finished jobs kept for GET /admin/v1/prefill (older ones are forgotten, files removed)."""


MAX_UNFINISHED = 64
"""Prefill jobs queued or running at once, at most (the admin API answers 429 beyond)."""


class TooManyJobs(Exception):
    """The queue of unfinished prefill jobs is full."""


class UnknownJob(KeyError):
    pass


class PrefillManager:
    def __init__(
        self,
        state_dir: Path,
        run_dir: Path,
        control: WorkerControl,
        config: Callable[[], PrefillConfig],
        retry_delay: float = 1.0,
    ) -> None:
        self.folder = state_dir / "prefill"
        self.rate_dir = run_dir / "prefill"
        self.control = control
        self.config = config
        self.retry_delay = retry_delay
        self.jobs: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._current: asyncio.Task[None] | None = None
        self._current_job: Job | None = None

    # -- API ------------------------------------------------------------------------------

    async def load(self) -> int:
        jobs = await asyncio.to_thread(load_jobs, self.folder)
        for j in jobs:
            self.jobs[j.id] = j
        resumed = sum(1 for j in jobs if not j.state.final)
        if resumed:
            log.info("prefill jobs resumed", extra={"jobs": resumed})
        self._wake.set()
        return resumed

    async def submit(self, spec: PrefillSpec) -> Job:
        """Accept a job; :class:`TooManyJobs` when ``MAX_UNFINISHED`` jobs are already waiting
        or running (each holds its file list in memory until it ends)."""
        if sum(1 for j in self.jobs.values() if not j.state.final) >= MAX_UNFINISHED:
            raise TooManyJobs(f"{MAX_UNFINISHED} prefill jobs are already unfinished")
        job = Job(new_job_id(), spec, time.time())
        await asyncio.to_thread(save_spec, self.folder, job)
        self.jobs[job.id] = job
        await self._persist(job)
        log.info(
            "prefill job accepted",
            extra={"job": job.id, "files": len(spec.files), "rate": spec.rate_bytes_per_s},
        )
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state.final:
            return job
        job.set_state(JobState.CANCELLED, time.time())
        if self._current_job is job and self._current is not None:
            self._current.cancel()
            await asyncio.wait([self._current])  # returns once it ended; never raises for it
        await self.control.each("POST", "/ctl/prefill_cancel", {"job": job.id})
        await self._persist(job)
        log.info("prefill job cancelled", extra={"job": job.id})
        return job

    def active(self) -> int:
        return sum(1 for j in self.jobs.values() if not j.state.final)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Runs queued jobs one by one; also saves progress once a second."""
        saver = asyncio.create_task(self._save_loop(), name="prefill saver")
        try:
            while True:
                job = next((j for j in self._ordered() if not j.state.final), None)
                if job is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._current_job = job
                self._current = asyncio.create_task(self._run_job(job), name=f"prefill {job.id}")
                try:
                    await asyncio.wait([self._current])
                finally:
                    if not self._current.done():
                        self._current.cancel()
                    self._current_job = None
                failure = None if self._current.cancelled() else self._current.exception()
                if failure is not None and not job.state.final:
                    log.error(
                        "prefill job failed",
                        extra={"job": job.id, "error": f"{type(failure).__name__}: {failure}"},
                    )
                    job.fail_rest(f"internal error: {type(failure).__name__}", time.time())
                await self._persist(job)
                self._forget_old()
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            for j in self.jobs.values():
                if j.dirty:
                    await self._persist(j)

    def _ordered(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created_at)

    async def _run_job(self, job: Job) -> None:
        rate_file = self.rate_dir / f"{job.id}.rate"
        cap = self.config().max_rate
        rate = min(job.spec.rate_bytes_per_s, cap) if cap else job.spec.rate_bytes_per_s
        limiter = await asyncio.to_thread(SharedRate.create, rate_file, float(rate))
        log.info("prefill job running", extra={"job": job.id, "rate": rate})
        try:
            async with asyncio.TaskGroup() as tg:
                for lane in range(job.spec.concurrency):
                    tg.create_task(self._lane(job, str(rate_file)), name=f"lane {lane}")
            if not job.state.final:
                job.set_state(JobState.DONE, time.time())
                c = job.counts()
                log.info("prefill job done", extra={"job": job.id, **c})
        finally:
            limiter.close()
            rate_file.unlink(missing_ok=True)
            sm.set_prefill_jobs(j.state.value for j in self.jobs.values())

    async def _lane(self, job: Job, rate_file: str) -> None:
        nworkers = self.control.nworkers
        while True:
            await self._wait_window(job)
            i = job.take()
            if i is None:
                return
            if job.state is not JobState.RUNNING:
                job.set_state(JobState.RUNNING, time.time())
            key = job.spec.files[i].path
            try:
                res = await self.control.call(
                    owner_of(key, nworkers),
                    "POST",
                    "/ctl/prefill",
                    {"key": key, "job": job.id, "rate_file": rate_file},
                    total_s=None,
                )
            except WorkerUnavailable as e:
                if job.retry(i, str(e)):
                    await asyncio.sleep(self.retry_delay)
                else:
                    sm.PREFILL_FILES.labels("failed").inc()
                continue
            result = str(res.get("result", "failed"))
            if result == "cancelled":
                return
            nbytes = int(res.get("bytes", 0))
            job.record(i, result, nbytes, str(res.get("error", "")))
            sm.PREFILL_FILES.labels(result if result in ("stored", "skipped") else "failed").inc()
            if nbytes:
                sm.PREFILL_BYTES.inc(nbytes)

    async def _wait_window(self, job: Job) -> None:
        while True:
            window = self.config().window
            lt = time.localtime()
            if in_window(window, lt.tm_hour * 60 + lt.tm_min):
                return
            if job.state is not JobState.WAITING_WINDOW:
                job.set_state(JobState.WAITING_WINDOW, time.time())
                log.info("prefill job waiting for the fill window", extra={"job": job.id})
            await asyncio.sleep(20.0)

    # -- persistence ----------------------------------------------------------------------

    async def _persist(self, job: Job) -> None:
        job.dirty = False
        try:
            await asyncio.to_thread(save_progress, self.folder, job.progress_json(time.time()))
        except OSError as e:
            job.dirty = True
            log.error("cannot save prefill progress", extra={"job": job.id, "error": str(e)})

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            sm.set_prefill_jobs(j.state.value for j in self.jobs.values())
            for j in list(self.jobs.values()):
                if j.dirty:
                    await self._persist(j)

    def _forget_old(self) -> None:
        finished = [j for j in self._ordered() if j.state.final]
        for j in finished[:-KEEP_FINISHED] if len(finished) > KEEP_FINISHED else []:
            del self.jobs[j.id]
            for name in (f"{j.id}.spec.json", f"{j.id}.json"):
                (self.folder / name).unlink(missing_ok=True)

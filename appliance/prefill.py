"""Prefill jobs: the model (no I/O besides the two small persistence helpers).

A job is a list of files to bring into the cache, a byte rate and a concurrency. Each file is
pending, done, failed or skipped (already stored); the per-file state is one byte per file, so
a job of 100 000 files persists in ~100 KB and resumes after a restart exactly where it was
(files in flight at the crash are pending again: the fill is idempotent). The runner that
drives jobs is :mod:`appliance.prefill_runner`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vodedge.files import write_file_atomic

log = logging.getLogger("appliance.prefill")

PENDING, DONE, FAILED, SKIPPED = "pdfs"
MAX_ERRORS = 100
MAX_ATTEMPTS = 5
"""Tries per file when its worker cannot be reached (restarting) before it counts as failed."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_WINDOW = "waiting_window"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class PrefillFile:
    path: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class PrefillSpec:
    files: tuple[PrefillFile, ...]
    rate_bytes_per_s: int
    concurrency: int
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [[f.path, f.size] for f in self.files],
            "rate_bytes_per_s": self.rate_bytes_per_s,
            "concurrency": self.concurrency,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PrefillSpec:
        return cls(
            tuple(PrefillFile(str(p), None if s is None else int(s)) for p, s in d["files"]),
            int(d["rate_bytes_per_s"]),
            int(d["concurrency"]),
            str(d.get("name", "")),
        )


def new_job_id() -> str:
    return secrets.token_hex(8)


@dataclass
class Job:
    id: str
    spec: PrefillSpec
    created_at: float
    state: JobState = JobState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    status: bytearray = field(default_factory=bytearray)
    bytes_done: int = 0
    active_seconds: float = 0.0
    """Seconds spent running (not queued, not waiting for the fill window), over restarts."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)
    _queue: deque[int] = field(default_factory=deque)
    _running_since: float | None = None
    dirty: bool = True

    def __post_init__(self) -> None:
        if not self.status:
            self.status = bytearray(PENDING.encode() * len(self.spec.files))
        self._queue = deque(i for i, s in enumerate(self.status) if s == ord(PENDING))

    # -- the runner's side --------------------------------------------------------------

    def take(self) -> int | None:
        """The next pending file to work on, or None when none is left to start."""
        if self.state.final or not self._queue:
            return None
        i = self._queue.popleft()
        self.in_flight.add(i)
        return i

    def record(self, i: int, result: str, nbytes: int, error: str = "") -> None:
        """A file finished: ``result`` is stored | skipped | failed."""
        self.in_flight.discard(i)
        if result == "skipped":
            self.status[i] = ord(SKIPPED)
        elif result == "stored":
            self.status[i] = ord(DONE)
        else:
            self.status[i] = ord(FAILED)
            if len(self.errors) < MAX_ERRORS:
                self.errors.append((self.spec.files[i].path, error or result))
        self.bytes_done += max(0, nbytes)
        self.dirty = True

    def fail_rest(self, error: str, now: float) -> None:
        """The runner itself failed on this job (a bug, or the box cannot run it): every file
        not finished yet counts as failed and the job ends, rather than being retried in a
        loop and blocking the jobs behind it."""
        for i, s in enumerate(self.status):
            if s == ord(PENDING):
                self.record(i, "failed", 0, error)
        self._queue.clear()
        self.set_state(JobState.DONE, now)

    def retry(self, i: int, error: str) -> bool:
        """The file's worker was unreachable: queue it again (False: gave up, now failed)."""
        n = self.attempts[i] = self.attempts.get(i, 0) + 1
        if n >= MAX_ATTEMPTS:
            self.record(i, "failed", 0, error)
            return False
        self.in_flight.discard(i)
        self._queue.append(i)
        return True

    def set_state(self, state: JobState, now: float) -> None:
        if state is self.state:
            return
        if self._running_since is not None:
            self.active_seconds += max(0.0, now - self._running_since)
            self._running_since = None
        if state is JobState.RUNNING:
            self._running_since = now
            if self.started_at is None:
                self.started_at = now
        if state.final:
            self.finished_at = now
            self.in_flight.clear()
        self.state = state
        self.dirty = True

    def finished(self) -> bool:
        return not self._queue and not self.in_flight

    # -- reporting ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        c = {s: self.status.count(ord(s)) for s in (PENDING, DONE, FAILED, SKIPPED)}
        return {
            "total": len(self.status),
            "done": c[DONE],
            "failed": c[FAILED],
            "skipped": c[SKIPPED],
            "pending": c[PENDING] - len(self.in_flight),
            "in_flight": len(self.in_flight),
        }

    def measured_rate(self, now: float) -> float | None:
        active = self.active_seconds
        if self._running_since is not None:
            active += max(0.0, now - self._running_since)
        return self.bytes_done / active if active > 0.5 else None

    def summary(self) -> dict[str, Any]:
        c = self.counts()
        return {
            "job_id": self.id,
            "name": self.spec.name,
            "state": self.state.value,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "files_total": c["total"],
            "files_done": c["done"],
            "files_failed": c["failed"],
            "files_skipped": c["skipped"],
            "bytes_done": self.bytes_done,
        }

    def detail(self, now: float) -> dict[str, Any]:
        c = self.counts()
        return self.summary() | {
            "started_at": self.started_at,
            "rate_bytes_per_s": self.spec.rate_bytes_per_s,
            "concurrency": self.spec.concurrency,
            "files_pending": c["pending"],
            "files_in_flight": c["in_flight"],
            "bytes_declared": sum(f.size or 0 for f in self.spec.files),
            "measured_rate_bytes_per_s": self.measured_rate(now),
            "errors": [{"path": p, "error": e} for p, e in self.errors],
        }

    # -- persistence --------------------------------------------------------------------

    def progress_json(self, now: float) -> dict[str, Any]:
        active = self.active_seconds
        if self._running_since is not None:
            active += max(0.0, now - self._running_since)
        return {
            "id": self.id,
            "created_at": self.created_at,
            "state": self.state.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status.decode(),
            "bytes_done": self.bytes_done,
            "active_seconds": active,
            "errors": self.errors,
        }


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    # Two saves of one job (the periodic saver and a cancel, say) may run at once on different
    # threads: each goes through a temporary file of its own.
    write_file_atomic(path, json.dumps(data, separators=(",", ":")).encode())


def save_spec(folder: Path, job: Job) -> None:
    """Once, when the job is accepted (blocking)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / f"{job.id}.spec.json", job.spec.to_json())


def save_progress(folder: Path, progress: dict[str, Any]) -> None:
    """Whenever the job changed, at most about once a second (blocking)."""
    _write_atomic(folder / f"{progress['id']}.json", progress)


def load_jobs(folder: Path) -> list[Job]:
    """Every job persisted in ``folder``, oldest first; unreadable ones are skipped."""
    jobs: list[Job] = []
    if not folder.is_dir():
        return jobs
    for spec_path in folder.glob("*.spec.json"):
        job_id = spec_path.name.removesuffix(".spec.json")
        try:
            spec = PrefillSpec.from_json(json.loads(spec_path.read_text()))
            created = spec_path.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            log.error("unreadable prefill job skipped", extra={"job": job_id})
            continue
        try:
            job = _job_from_progress(job_id, spec, created, folder / f"{job_id}.json")
        except (OSError, ValueError, KeyError, TypeError):
            # The progress file is damaged (or from another version): the job starts over from
            # its spec rather than being lost; files already stored are skipped quickly.
            log.error("prefill progress unreadable; job restarts", extra={"job": job_id})
            job = Job(id=job_id, spec=spec, created_at=created)
        if job.state in (JobState.RUNNING, JobState.WAITING_WINDOW):
            job.state = JobState.QUEUED  # resumes; set_state(RUNNING) restarts the clock
        jobs.append(job)
    jobs.sort(key=lambda j: j.created_at)
    return jobs


def _job_from_progress(job_id: str, spec: PrefillSpec, created: float, path: Path) -> Job:
    prog = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(prog, dict):
        raise ValueError("progress is not an object")
    status = bytearray(str(prog.get("status", "")).encode())
    if len(status) != len(spec.files):
        status = bytearray()
    return Job(
        id=job_id,
        spec=spec,
        created_at=float(prog.get("created_at", created)),
        state=JobState(prog.get("state", "queued")),
        started_at=prog.get("started_at"),
        finished_at=prog.get("finished_at"),
        status=status,
        bytes_done=int(prog.get("bytes_done", 0)),
        active_seconds=float(prog.get("active_seconds", 0.0)),
        errors=[(str(p), str(e)) for p, e in prog.get("errors", [])],
    )


def in_window(window: tuple[int, int] | None, minute_of_day: int) -> bool:
    """Whether ``minute_of_day`` (local) is inside ``[start, end)``, which may wrap midnight."""
    if window is None:
        return True
    start, end = window
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end

"""The job queue with leases (a visibility timeout), as SQL over an open write transaction.

:class:`origin.catalog.repo.SqliteCatalog` opens the transaction (``BEGIN IMMEDIATE``, so one
writer at a time across processes) and passes the clock's ``now``; these functions hold the
queue's rules:

- A job is named by ``(video_id, key)``: enqueuing the same key again returns the existing job
  (``Conflict`` if its kind or payload differ, which is a caller's bug, not a retry).
- ``claim`` leases the oldest claimable job: queued with ``not_before <= now``, or leased with
  an expired lease (its worker died or hung). The claim counts as an attempt; an expired lease is
  written to the error log. Jobs of a FAILED or deleted video are not handed out, so one failed
  chunk stops the rest of the title's work.
- A lease is valid while ``now < lease_expires_at``. Only the holder of a valid lease may extend
  it, complete the job or fail it; a worker whose lease expired is refused even if nobody has
  taken the job yet, and must drop its output. Worker ids must be unique per claiming thread.
- A failure requeues the job after back-off until ``max_attempts``, then the job is failed; a
  permanent failure (bad input, not a flaky run) fails at once. An expired lease on the last
  attempt fails the job too: a job that kills its worker is not retried for ever.
- A job that fails for good fails its video (FAILED, the job's error as the reason) in the same
  transaction, unless the video is READY already: nothing is left waiting on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from origin.catalog.errors import Conflict, Invalid, NotFound
from origin.catalog.models import Job, JobCounts, JobSpec, RetryPolicy, clip_error
from origin.catalog.rows import JOB_COLUMNS, columns, dump_json, job_from

JOBS = columns(JOB_COLUMNS)

# A job the caller still holds: named parameters :job_id, :worker, :now.
_HELD = (
    "job_id = :job_id AND state = 'leased' AND lease_owner = :worker AND lease_expires_at > :now"
)

# An expired lease, as the error of the attempt it ended.
_LOST = "'lease of ' || lease_owner || ' expired'"


def enqueue(
    c: sqlite3.Connection, video_id: str, specs: Sequence[JobSpec], now: float
) -> list[Job]:
    jobs: list[Job] = []
    for spec in specs:
        payload = dump_json(spec.payload)
        row = c.execute(
            "INSERT INTO jobs (video_id, kind, key, payload, max_attempts, not_before, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (video_id, key) DO NOTHING RETURNING {JOBS}",
            (video_id, spec.kind, spec.key, payload, spec.max_attempts, now, now, now),
        ).fetchone()
        if row is None:  # enqueued before: the same work, or a caller's mistake
            row = c.execute(
                f"SELECT {JOBS} FROM jobs WHERE video_id = ? AND key = ?", (video_id, spec.key)
            ).fetchone()
            if row["kind"] != spec.kind or row["payload"] != payload:
                raise Conflict(f"job {spec.key!r} of {video_id} exists with other work")
        jobs.append(job_from(row))
    return jobs


def claim(
    c: sqlite3.Connection,
    worker_id: str,
    kinds: Sequence[str] | None,
    lease_s: float,
    now: float,
) -> Job | None:
    wanted: tuple[str, ...] = ()
    kind_filter = ""
    if kinds is not None:
        wanted = tuple(dict.fromkeys(kinds))
        if not wanted or isinstance(kinds, str):
            raise Invalid("kinds is None (any kind) or a list of at least one kind")
        kind_filter = f"AND j.kind IN ({', '.join('?' * len(wanted))})"
    _fail_lost_last_attempts(c, now)
    row = c.execute(
        f"""
        UPDATE jobs SET
            error_log = CASE WHEN state = 'leased' THEN json_insert(error_log, '$[#]',
                json_object('attempt', attempts, 'worker', lease_owner, 'error', {_LOST},
                            'at', ?))
                ELSE error_log END,
            last_error = CASE WHEN state = 'leased' THEN {_LOST} ELSE last_error END,
            state = 'leased', lease_owner = ?, lease_expires_at = ?,
            attempts = attempts + 1, updated_at = ?
        WHERE job_id = (SELECT min(job_id) FROM (
            SELECT * FROM ({_claimable("queued", "not_before", kind_filter)})
            UNION ALL
            SELECT * FROM ({_claimable("leased", "lease_expires_at", kind_filter)})))
        RETURNING {JOBS}
        """,
        (now, worker_id, now + lease_s, now, now, *wanted, now, *wanted),
    ).fetchone()
    return None if row is None else job_from(row)


def extend(c: sqlite3.Connection, job_id: int, worker_id: str, lease_s: float, now: float) -> bool:
    cur = c.execute(
        f"UPDATE jobs SET lease_expires_at = :until, updated_at = :now WHERE {_HELD}",
        {"until": now + lease_s, "now": now, "job_id": job_id, "worker": worker_id},
    )
    return cur.rowcount == 1


def release(c: sqlite3.Connection, job_id: int, worker_id: str, now: float) -> bool:
    """Give a held job back to the queue, due now, without spending the attempt (a worker that
    stops on purpose); False if the lease is lost."""
    cur = c.execute(
        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
        "attempts = max(attempts - 1, 0), not_before = :now, updated_at = :now "
        f"WHERE {_HELD}",
        {"now": now, "job_id": job_id, "worker": worker_id},
    )
    return cur.rowcount == 1


def complete(
    c: sqlite3.Connection, job_id: int, worker_id: str, result: object, now: float
) -> str | None:
    """Mark a held job done; its video id, or None if the lease is lost."""
    row = c.execute(
        "UPDATE jobs SET state = 'done', result = :result, lease_owner = NULL, "
        f"lease_expires_at = NULL, updated_at = :now WHERE {_HELD} RETURNING video_id",
        {
            "result": None if result is None else dump_json(result),
            "now": now,
            "job_id": job_id,
            "worker": worker_id,
        },
    ).fetchone()
    return None if row is None else str(row["video_id"])


def fail(
    c: sqlite3.Connection,
    job_id: int,
    worker_id: str,
    error: str,
    *,
    permanent: bool,
    now: float,
    retry: RetryPolicy,
) -> Job | None:
    row = c.execute(
        f"SELECT {JOBS} FROM jobs WHERE {_HELD}",
        {"now": now, "job_id": job_id, "worker": worker_id},
    ).fetchone()
    if row is None:
        return None
    job = job_from(row)
    final = permanent or job.attempts >= job.max_attempts
    delay = 0.0 if final else retry.delay(job.attempts)
    return _record_failure(c, job, worker_id, error, final=final, now=now, delay=delay)


def get(c: sqlite3.Connection, job_id: int) -> Job:
    row = c.execute(f"SELECT {JOBS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return job_from(row)


def of_video(c: sqlite3.Connection, video_id: str) -> list[Job]:
    rows = c.execute(
        f"SELECT {JOBS} FROM jobs WHERE video_id = ? ORDER BY job_id", (video_id,)
    ).fetchall()
    return [job_from(r) for r in rows]


def counts(c: sqlite3.Connection, video_id: str) -> dict[str, JobCounts]:
    rows = c.execute(
        "SELECT kind, state, count(*) FROM jobs WHERE video_id = ? GROUP BY kind, state",
        (video_id,),
    ).fetchall()
    by_kind: dict[str, dict[str, int]] = {}
    for kind, state, n in rows:
        by_kind.setdefault(kind, {})[state] = n
    return {kind: JobCounts(**states) for kind, states in sorted(by_kind.items())}


def all_done(c: sqlite3.Connection, video_id: str, kind: str) -> bool:
    total, done = c.execute(
        "SELECT count(*), coalesce(sum(state = 'done'), 0) FROM jobs "
        "WHERE video_id = ? AND kind = ?",
        (video_id, kind),
    ).fetchone()
    return bool(total) and total == done


def backlog(c: sqlite3.Connection, now: float) -> tuple[dict[tuple[str, str], int], float]:
    """Queued and leased jobs of videos that can progress, by ``(kind, state)``, and how long
    the oldest due queued job has waited (0 if none). One query per state so that each walks
    its partial index, not the finished jobs (monitoring runs this at every scrape)."""
    counts: dict[tuple[str, str], int] = {}
    oldest_due: float | None = None
    for state in ("queued", "leased"):
        rows = c.execute(
            "SELECT j.kind, count(*), min(CASE WHEN j.not_before <= :now THEN j.not_before END) "
            "FROM jobs AS j JOIN videos AS v ON v.video_id = j.video_id "
            "WHERE j.state = :state AND v.status != 'FAILED' AND v.deleted_at IS NULL "
            "GROUP BY j.kind",
            {"now": now, "state": state},
        ).fetchall()
        for kind, n, due in rows:
            counts[kind, state] = int(n)
            if state == "queued" and due is not None:
                oldest_due = due if oldest_due is None else min(oldest_due, due)
    return counts, 0.0 if oldest_due is None else max(0.0, now - oldest_due)


def reset_unfinished(c: sqlite3.Connection, video_id: str, now: float) -> None:
    """Queued and failed jobs start over with fresh attempts; error logs are kept."""
    c.execute(
        "UPDATE jobs SET state = 'queued', attempts = 0, not_before = :now, last_error = NULL, "
        "updated_at = :now WHERE video_id = :video_id AND state IN ('queued', 'failed')",
        {"now": now, "video_id": video_id},
    )


def _claimable(state: str, due: str, kind_filter: str) -> str:
    """SQL for the oldest job in ``state`` whose ``due`` time has come, of a live video.

    Claim asks twice, once for queued jobs (by ``not_before``) and once for leased ones (by
    ``lease_expires_at``), so that each half walks its own partial index instead of every
    finished job in the table (a claim stays well under a millisecond with 100k jobs done).
    """
    return (
        "SELECT j.job_id FROM jobs AS j JOIN videos AS v ON v.video_id = j.video_id "
        f"WHERE j.state = '{state}' AND j.{due} <= ? "
        f"AND v.status != 'FAILED' AND v.deleted_at IS NULL {kind_filter} "
        "ORDER BY j.job_id LIMIT 1"
    )


def _fail_lost_last_attempts(c: sqlite3.Connection, now: float) -> None:
    """Fail the jobs whose last allowed attempt ended with an expired lease."""
    rows = c.execute(
        f"SELECT {JOBS} FROM jobs WHERE state = 'leased' AND lease_expires_at <= ? "
        "AND attempts >= max_attempts",
        (now,),
    ).fetchall()
    for row in rows:
        job = job_from(row)
        owner = job.lease_owner or "?"
        error = f"lease of {owner} expired"
        _record_failure(c, job, owner, error, final=True, now=now, delay=0.0)


def _record_failure(
    c: sqlite3.Connection,
    job: Job,
    worker_id: str,
    error: str,
    *,
    final: bool,
    now: float,
    delay: float,
) -> Job:
    error = clip_error(error) or "unknown error"
    row = c.execute(
        f"""
        UPDATE jobs SET
            state = :state, lease_owner = NULL, lease_expires_at = NULL,
            not_before = :not_before, last_error = :error, updated_at = :now,
            error_log = json_insert(error_log, '$[#]', json_object(
                'attempt', attempts, 'worker', :worker, 'error', :error, 'at', :now))
        WHERE job_id = :job_id RETURNING {JOBS}
        """,
        {
            "state": "failed" if final else "queued",
            "not_before": now + delay,
            "error": error,
            "now": now,
            "worker": worker_id,
            "job_id": job.job_id,
        },
    ).fetchone()
    if final:
        c.execute(
            "UPDATE videos SET status = 'FAILED', failure_reason = ?, updated_at = ? "
            "WHERE video_id = ? AND status NOT IN ('READY', 'FAILED') AND deleted_at IS NULL",
            (clip_error(f"{job.kind} {job.key} failed: {error}"), now, job.video_id),
        )
    return job_from(row)

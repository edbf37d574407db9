"""The jobs that start a video's pipeline (upload completion and operator re-runs use them)."""

from __future__ import annotations

from origin.catalog import JobSpec

PROBE = "probe"
"""Kind (and key) of the first stage: probe and validate the uploaded source."""


def first_jobs(max_attempts: int = 3) -> list[JobSpec]:
    """What to enqueue for a video whose source is in place (``video.source_path``)."""
    return [JobSpec(kind=PROBE, key=PROBE, payload={}, max_attempts=max_attempts)]

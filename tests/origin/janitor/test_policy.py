"""The janitor's decisions: what is due at ``now`` for each kind, and what never is."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.catalog.models import VideoStatus
from origin.janitor.policy import (
    STAGING_EXPIRY_S,
    Ages,
    OpenUpload,
    Plan,
    StagingCandidate,
    VideoState,
    WorkDirCandidate,
    plan,
    staging_owner,
)

NOW = 1_700_000_000.0
DAY = 86400.0
AGES = Ages(upload_expiry_s=7 * DAY, failed_work_expiry_s=3 * DAY)


def test_only_uploads_idle_past_the_expiry_go() -> None:
    old = OpenUpload("old", NOW - 7 * DAY - 1, Path("/u/old.part"))
    edge = OpenUpload("edge", NOW - 7 * DAY, Path("/u/edge.part"))
    fresh = OpenUpload("fresh", NOW - 60, Path("/u/fresh.part"))
    assert plan(NOW, AGES, uploads=[old, edge, fresh]).uploads == (old,)


@pytest.mark.parametrize(
    ("video", "due"),
    [
        (VideoState("FAILED", NOW - 3 * DAY - 1), True),
        (VideoState("FAILED", NOW - DAY), False),  # failed recently: kept for a look
        (VideoState("READY", NOW - 30 * DAY), False),
        (VideoState("TRANSCODING", NOW - 30 * DAY), False),
        (VideoState("FAILED", NOW - 30 * DAY, deleted=True), False),  # delete clears it itself
        (None, False),  # unknown: not ours to judge
    ],
)
def test_work_dirs_of_long_failed_videos_go(video: VideoState | None, due: bool) -> None:
    todo = plan(NOW, AGES, work_dirs=[WorkDirCandidate("v1", video)])
    assert todo.work_dirs == (("v1",) if due else ())


def test_failed_work_expiry_zero_takes_every_failed_video() -> None:
    ages = Ages(upload_expiry_s=DAY, failed_work_expiry_s=0)
    todo = plan(NOW, ages, work_dirs=[WorkDirCandidate("v1", VideoState("FAILED", NOW - 1))])
    assert todo.work_dirs == ("v1",)


OLD = NOW - STAGING_EXPIRY_S - 1
STATES: list[VideoStatus] = ["PENDING", "SEGMENTED", "TRANSCODING", "READY", "FAILED"]


@pytest.mark.parametrize("status", STATES)
def test_old_staging_goes_only_when_no_job_can_run(status: VideoStatus) -> None:
    c = StagingCandidate(Path("/m/.staging/v1.ab"), OLD, "v1", VideoState(status, OLD))
    due = status in ("READY", "FAILED")
    assert plan(NOW, AGES, staging=[c]).staging_dirs == ((c.path,) if due else ())


@pytest.mark.parametrize(
    ("video_id", "video", "mtime", "due"),
    [
        ("v1", VideoState("PENDING", OLD, deleted=True), OLD, True),
        ("v1", None, OLD, True),  # unknown to the catalog (hard-deleted)
        ("v1", None, NOW - STAGING_EXPIRY_S + 60, False),  # not a day old yet
        ("v1", VideoState("READY", OLD), NOW - 60, False),
        (None, None, OLD, False),  # a name that names no video
    ],
)
def test_staging_age_and_owner(
    video_id: str | None, video: VideoState | None, mtime: float, due: bool
) -> None:
    c = StagingCandidate(Path("/m/.staging/x"), mtime, video_id, video)
    assert bool(plan(NOW, AGES, staging=[c])) is due


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("v1.k3j2", "v1"),
        ("abc_D-9.removed.x1", "abc_D-9"),
        ("v1", None),
        ("v1.", None),
        (".hidden", None),
        ("bad id.x", None),
    ],
)
def test_staging_owner(name: str, owner: str | None) -> None:
    assert staging_owner(name) == owner


def test_an_empty_plan_is_false() -> None:
    assert not plan(NOW, AGES)
    assert not Plan()

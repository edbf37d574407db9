"""The janitor's driver on a real SQLite catalog and real directories, one run at a time with a
clock the test moves; and ``serve``'s way of running it (cancelled with the task set)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from origin.catalog import Catalog, CatalogError, PublishedFile, SqliteCatalog
from origin.janitor import Janitor, JanitorSettings
from origin.janitor.policy import STAGING_EXPIRY_S, Ages
from origin.metrics.janitor import JanitorMetrics
from origin.storage import STAGING
from tests.origin.catalog.conftest import START, Clock
from vodedge.tasks import TaskSet

DAY = 86400.0
AGES = Ages(upload_expiry_s=7 * DAY, failed_work_expiry_s=3 * DAY)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(tmp_path: Path, clock: Clock) -> Iterator[SqliteCatalog]:
    with SqliteCatalog.open(tmp_path / "catalog.db", now=clock) as c:
        yield c


@pytest.fixture
def settings(tmp_path: Path) -> JanitorSettings:
    return JanitorSettings(
        interval_s=3600.0, ages=AGES, work_dir=tmp_path / "work", media_root=tmp_path / "media"
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def janitor(
    catalog: Catalog, settings: JanitorSettings, registry: CollectorRegistry, clock: Clock
) -> Janitor:
    return Janitor(catalog, settings, JanitorMetrics(registry), now=clock)


def removed(registry: CollectorRegistry, what: str) -> float:
    return registry.get_sample_value("vodedge_origin_janitor_removed_total", {"what": what}) or 0


def errors(registry: CollectorRegistry, step: str) -> float:
    return registry.get_sample_value("vodedge_origin_janitor_errors_total", {"step": step}) or 0


def upload_with_file(catalog: SqliteCatalog, directory: Path) -> tuple[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f"{len(list(directory.iterdir()))}.part"
    part.write_bytes(b"x" * 10)
    upload = catalog.create_upload(100, title="up", temp_path=str(part))
    return upload.upload_id, part


def work_dir(settings: JanitorSettings, video_id: str) -> Path:
    chunk = settings.work_dir / video_id / "chunks" / "h264-360p" / "00000.mp4"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(b"chunk")
    return settings.work_dir / video_id


async def test_a_run_aborts_an_old_upload_and_keeps_a_fresh_one(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
    tmp_path: Path,
) -> None:
    old_id, old_part = upload_with_file(catalog, tmp_path / "uploads")
    clock.advance(6 * DAY)
    fresh_id, fresh_part = upload_with_file(catalog, tmp_path / "uploads")
    clock.advance(DAY + 1)  # old: 7 days + 1 s idle; fresh: 1 day + 1 s

    outcome = await janitor(catalog, settings, registry, clock).run_once()

    assert outcome is not None and outcome.uploads == 1
    assert catalog.get_upload(old_id).status == "aborted" and not old_part.exists()
    assert catalog.get_upload(fresh_id).status == "open" and fresh_part.exists()
    assert removed(registry, "upload") == 1
    assert registry.get_sample_value("vodedge_origin_janitor_run_duration_seconds_count") == 1


async def test_an_upload_written_to_meanwhile_is_not_aborted(
    catalog: SqliteCatalog, clock: Clock, tmp_path: Path
) -> None:
    upload_id, _ = upload_with_file(catalog, tmp_path / "uploads")
    clock.advance(8 * DAY)
    cutoff = clock.now - 7 * DAY
    catalog.add_upload_bytes(upload_id, 0, 10)  # a part ended between survey and removal
    with pytest.raises(CatalogError, match="no longer idle"):
        catalog.abort_upload(upload_id, idle_before=cutoff)
    assert catalog.get_upload(upload_id).status == "open"


async def test_a_run_removes_only_old_failed_work_dirs(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
) -> None:
    old_failed = catalog.create_video("old failed").video_id
    catalog.set_status(old_failed, "FAILED", "boom")
    ready = catalog.create_video("ready").video_id
    catalog.set_published(ready, [], [PublishedFile(f"/v/{ready}/master.m3u8", 400)])
    clock.advance(2 * DAY)
    fresh_failed = catalog.create_video("fresh failed").video_id
    catalog.set_status(fresh_failed, "FAILED", "boom")
    running = catalog.create_video("running").video_id
    dirs = {v: work_dir(settings, v) for v in (old_failed, ready, fresh_failed, running)}
    clock.advance(DAY + 1)  # old_failed: 3 days + 1 s; fresh_failed: 1 day + 1 s

    outcome = await janitor(catalog, settings, registry, clock).run_once()

    assert outcome is not None and outcome.work_dirs == 1
    assert [v for v, d in dirs.items() if d.exists()] == [ready, fresh_failed, running]
    assert removed(registry, "work_dir") == 1
    assert catalog.get_video(old_failed).status == "FAILED"  # only files go, not the record


async def test_a_run_removes_old_staging_dirs_of_settled_or_unknown_videos(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
) -> None:
    failed = catalog.create_video("failed").video_id
    catalog.set_status(failed, "FAILED", "boom")
    running = catalog.create_video("running").video_id
    staging = settings.media_root / STAGING
    names = [f"{failed}.a1", f"{running}.b2", "gone.c3", "noname", f"{failed}.fresh"]
    for name in names:
        (staging / name / "h264-360p").mkdir(parents=True)
    old = START - STAGING_EXPIRY_S - 1
    for name in names[:-1]:
        os.utime(staging / name, (old, old))
    fresh = START - 60
    os.utime(staging / names[-1], (fresh, fresh))

    outcome = await janitor(catalog, settings, registry, clock).run_once()

    assert outcome is not None and outcome.staging_dirs == 2
    left = sorted(p.name for p in staging.iterdir())
    assert left == sorted([f"{running}.b2", "noname", f"{failed}.fresh"])
    assert removed(registry, "staging_dir") == 2


async def test_a_run_with_nothing_on_disk_removes_nothing(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
) -> None:
    outcome = await janitor(catalog, settings, registry, clock).run_once()
    assert outcome is not None and outcome == type(outcome)()
    assert removed(registry, "upload") == removed(registry, "work_dir") == 0


async def test_a_failed_run_is_logged_and_counted_never_raised(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog.close()  # every catalog call now fails
    with caplog.at_level(logging.ERROR, logger="origin.janitor"):
        assert await janitor(catalog, settings, registry, clock).run_once() is None
    assert errors(registry, "survey") == 1
    assert "janitor run failed" in caplog.text


async def test_an_item_that_cannot_be_removed_is_counted_and_the_rest_goes_on(
    catalog: SqliteCatalog,
    settings: JanitorSettings,
    registry: CollectorRegistry,
    clock: Clock,
    tmp_path: Path,
) -> None:
    bad_id, bad_part = upload_with_file(catalog, tmp_path / "uploads")
    bad_part.unlink()
    bad_part.mkdir()  # unlink() fails on it, for root too
    good_id, good_part = upload_with_file(catalog, tmp_path / "uploads")
    clock.advance(8 * DAY)

    outcome = await janitor(catalog, settings, registry, clock).run_once()

    assert outcome is not None and (outcome.uploads, outcome.upload_errors) == (1, 1)
    assert bad_part.exists() and not good_part.exists()
    assert catalog.get_upload(good_id).status == catalog.get_upload(bad_id).status == "aborted"
    assert errors(registry, "upload") == 1 and removed(registry, "upload") == 1


async def test_serve_runs_it_every_interval_and_stops_it_with_the_task_set(
    catalog: SqliteCatalog, tmp_path: Path, registry: CollectorRegistry, clock: Clock
) -> None:
    settings = JanitorSettings(
        interval_s=0.01, ages=AGES, work_dir=tmp_path / "work", media_root=tmp_path / "media"
    )
    tasks = TaskSet(logging.getLogger("test"))
    task = tasks.spawn(janitor(catalog, settings, registry, clock).run(), name="janitor")
    runs = "vodedge_origin_janitor_run_duration_seconds_count"
    for _ in range(500):
        if (registry.get_sample_value(runs) or 0) >= 2:
            break
        await asyncio.sleep(0.01)
    assert (registry.get_sample_value(runs) or 0) >= 2
    await tasks.cancel_all()
    assert task.cancelled() and len(tasks) == 0

"""The publish stage's redo cases, in-process on a real catalog and media directory: a crash
after the rename, a redo after READY, two attempts at once, a title already in place, a staged
title that vanished, a FAILED video, a video deleted while publishing; and a package attempt
whose encoded pieces are gone."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from origin.catalog import Job, JobSpec, PublishedFile, Rendition, SqliteCatalog, Video
from origin.config import PipelineConfig, WebhookConfig
from origin.media.tools import Tools
from origin.pipeline import package, publish
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import NOTIFY, package_job, publish_job
from origin.pipeline.stage import Context
from origin.storage import STAGING, LocalStorage, StoredFile
from tests.origin.pipeline.test_jobs import analysis

RENDITIONS = [Rendition("h264-360p", "video", "h264", 640, 360, 900_000, 800_000, "avc1.64001e")]
FILES = {"master.m3u8": b"#EXTM3U\n", "h264-360p/seg-00001.m4s": b"x" * 1000}


@dataclass
class Setup:
    ctx: Context
    catalog: SqliteCatalog
    storage: LocalStorage
    video_id: str
    staging: Path
    job: Job


@pytest.fixture
def setup(tmp_path: Path, tools: Tools) -> Iterator[Setup]:
    with SqliteCatalog.open(tmp_path / "catalog.db") as catalog:
        storage = LocalStorage(tmp_path / "media")
        vid = catalog.create_video("T").video_id
        staging = storage.staging_dir(vid).resolve()
        for name, data in FILES.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        catalog.enqueue(vid, publish_job(staging, RENDITIONS, 3))
        job = catalog.claim("w:1:0")
        assert job is not None
        ctx = Context(
            pipeline=PipelineConfig(work_dir=tmp_path / "work"),
            webhook=WebhookConfig(url="http://127.0.0.1:9/hook"),
            catalog=catalog,
            storage=storage,
            tools=tools,
        )
        yield Setup(ctx, catalog, storage, vid, staging, job)


def expected_files(vid: str) -> list[tuple[str, int, str | None]]:
    return [
        (f"/v/{vid}/h264-360p/seg-00001.m4s", 1000, "h264-360p"),
        (f"/v/{vid}/master.m3u8", 8, None),
    ]


def published(s: Setup) -> list[tuple[str, int, str | None]]:
    detail = s.catalog.video_detail(s.video_id)
    assert detail.video.status == "READY"
    assert detail.renditions == tuple(RENDITIONS)
    return [(f.path, f.size, f.rendition) for f in detail.files]


async def test_publish_makes_the_title_ready_and_cleans_up(setup: Setup) -> None:
    work = setup.ctx.work(setup.video_id).root
    (work / "chunks").mkdir(parents=True)
    orphan = setup.storage.root / STAGING / f"{setup.video_id}.killed"
    orphan.mkdir()
    done = await publish.run(setup.ctx, setup.job)
    assert done.result == {"files": 2, "bytes": 1008, "already": False}
    assert published(setup) == expected_files(setup.video_id)
    assert (setup.storage.root / "v" / setup.video_id / "master.m3u8").read_bytes() == b"#EXTM3U\n"
    assert not work.exists() and not orphan.exists() and not setup.staging.exists()
    [notify] = done.then
    video = setup.catalog.get_video(setup.video_id)
    assert (notify.kind, notify.payload["updated_at"]) == (NOTIFY, video.updated_at)


async def test_a_redo_after_the_rename_lists_the_published_title(setup: Setup) -> None:
    await setup.storage.publish(setup.video_id, setup.staging)  # then the worker died
    done = await publish.run(setup.ctx, setup.job)
    assert done.result["already"] is False
    assert published(setup) == expected_files(setup.video_id)


async def test_a_redo_after_ready_only_completes(setup: Setup) -> None:
    await publish.run(setup.ctx, setup.job)
    ready = setup.catalog.get_video(setup.video_id)
    again = await publish.run(setup.ctx, setup.job)  # the first one lost its lease
    assert again.result == {"files": 0, "bytes": 0, "already": True}
    assert setup.catalog.get_video(setup.video_id) == ready
    assert [s.payload for s in again.then] == [
        {"event": "video.ready", "video_id": setup.video_id, "updated_at": ready.updated_at}
    ]


async def test_a_vanished_staging_directory_fails_for_good(setup: Setup) -> None:
    shutil.rmtree(setup.staging)
    with pytest.raises(Rejected, match="is gone and nothing is published"):
        await publish.run(setup.ctx, setup.job)


async def test_a_failed_video_is_not_published(setup: Setup) -> None:
    setup.catalog.set_status(setup.video_id, "FAILED", "a chunk failed")
    with pytest.raises(Rejected, match="the video is FAILED: a chunk failed"):
        await publish.run(setup.ctx, setup.job)
    assert setup.staging.is_dir()  # nothing moved


async def test_package_refuses_to_run_without_its_pieces(setup: Setup) -> None:
    catalog, vid = setup.catalog, setup.video_id
    plan = analysis(seconds=8.0, size=(640, 360))  # two 4 s chunks x two rungs
    [analyse] = catalog.enqueue_many(vid, [JobSpec("analyse", "analyse")])
    catalog.complete(setup.job.job_id, "w:1:0")  # the publish job of the fixture is in the way
    claimed = catalog.claim("w:1:0", kinds=["analyse"])
    assert claimed is not None and catalog.complete(claimed.job_id, "w:1:0", plan.to_json())
    [job] = catalog.enqueue_many(vid, [package_job(analyse.job_id, 3)])
    work = setup.ctx.work(vid)
    work.chunk("h264-240p", 0).parent.mkdir(parents=True)
    work.chunk("h264-240p", 0).write_bytes(b"whole")
    with pytest.raises(Rejected) as info:
        await package.run(setup.ctx, job)
    assert str(info.value) == (
        "encoded pieces are gone from the work directory: chunks/h264-240p/00001.mp4, "
        "chunks/h264-360p/00000.mp4, chunks/h264-360p/00001.mp4, audio.mp4 "
        "(re-run the title without keeping done jobs)"
    )
    assert [p.name for p in work.root.iterdir()] == ["chunks"]  # its scratch space is gone


class SideBySide(LocalStorage):
    """Storage whose publishes wait for each other, so that two attempts rename at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.barrier = threading.Barrier(2, timeout=10)

    def publish_blocking(self, video_id: str, staging: Path) -> list[StoredFile]:
        self.barrier.wait()
        return super().publish_blocking(video_id, staging)


async def test_two_attempts_publishing_at_once_keep_the_title(setup: Setup) -> None:
    """A job released at a shutdown while its thread still runs, and the worker redoing it."""
    storage = SideBySide(setup.storage.root)
    ctx = replace(setup.ctx, storage=storage)
    first, second = await asyncio.gather(publish.run(ctx, setup.job), publish.run(ctx, setup.job))
    assert sorted([first.result["already"], second.result["already"]]) == [False, True]
    assert published(setup) == expected_files(setup.video_id)
    title = setup.storage.root / "v" / setup.video_id
    assert (title / "master.m3u8").read_bytes() == b"#EXTM3U\n"
    assert (title / "h264-360p" / "seg-00001.m4s").stat().st_size == 1000


async def test_a_title_in_place_is_listed_not_replaced(setup: Setup) -> None:
    await setup.storage.publish(setup.video_id, setup.staging)  # an attempt that then died
    other = setup.storage.staging_dir(setup.video_id)  # a later package attempt's output
    (other / "master.m3u8").write_bytes(b"#EXTM3U\n#other\n")
    job = replace(setup.job, payload={**setup.job.payload, "staging": str(other)})
    done = await publish.run(setup.ctx, job)
    assert done.result["already"] is False
    assert published(setup) == expected_files(setup.video_id)
    title = setup.storage.root / "v" / setup.video_id
    assert (title / "master.m3u8").read_bytes() == b"#EXTM3U\n"
    assert not other.exists()  # swept with the other staging directories


class DeletedBeforeTheRename(LocalStorage):
    """The API's DELETE lands after the publish read the video and before it renamed: the
    tombstone is written and the delete's file removal finds nothing yet."""

    def __init__(self, root: Path, catalog: SqliteCatalog) -> None:
        super().__init__(root)
        self.catalog = catalog
        self.deleted = threading.Event()
        self.go = threading.Event()
        self.taken_away = threading.Event()

    def publish_blocking(self, video_id: str, staging: Path) -> list[StoredFile]:
        self.catalog.delete_video(video_id)
        assert not self.remove_video_blocking(video_id)
        self.deleted.set()
        assert self.go.wait(10)
        return super().publish_blocking(video_id, staging)

    def remove_video_blocking(self, video_id: str) -> bool:
        removed = super().remove_video_blocking(video_id)
        if removed:
            self.taken_away.set()
        return removed


async def test_a_video_deleted_while_publishing_leaves_no_files(setup: Setup) -> None:
    work = setup.ctx.work(setup.video_id).root
    (work / "chunks").mkdir(parents=True)
    storage = DeletedBeforeTheRename(setup.storage.root, setup.catalog)
    storage.go.set()
    done = await publish.run(replace(setup.ctx, storage=storage), setup.job)
    assert done.result["deleted"] is True and done.then == ()
    assert not (setup.storage.root / "v" / setup.video_id).exists()
    assert not setup.staging.exists() and not work.exists()
    video = setup.catalog.get_video(setup.video_id, include_deleted=True)
    assert video.deleted_at is not None and video.status == "PENDING"


async def test_a_publish_cancelled_by_the_delete_still_takes_its_title_away(
    setup: Setup,
) -> None:
    """The delete removed the job, so the lease keeper cancels the attempt while its rename
    runs in a worker thread: the thread goes on, renames, sees the tombstone, removes."""
    storage = DeletedBeforeTheRename(setup.storage.root, setup.catalog)
    attempt = asyncio.create_task(publish.run(replace(setup.ctx, storage=storage), setup.job))
    assert await asyncio.to_thread(storage.deleted.wait, 10)  # the attempt is in its thread
    attempt.cancel("lease lost")
    with pytest.raises(asyncio.CancelledError):
        await attempt
    storage.go.set()  # the rename happens after the cancellation
    assert await asyncio.to_thread(storage.taken_away.wait, 10)
    assert not (setup.storage.root / "v" / setup.video_id).exists()


class DeletedBeforeTheRecord(SqliteCatalog):
    """The DELETE lands after the rename and its check, before ``set_published``."""

    def set_published(
        self, video_id: str, renditions: Sequence[Rendition], files: Sequence[PublishedFile]
    ) -> Video:
        self.delete_video(video_id)
        return super().set_published(video_id, renditions, files)


async def test_a_video_deleted_before_the_record_leaves_no_files(
    setup: Setup, tmp_path: Path
) -> None:
    with DeletedBeforeTheRecord.open(tmp_path / "catalog.db") as catalog:
        done = await publish.run(replace(setup.ctx, catalog=catalog), setup.job)
    assert done.result["deleted"] is True
    assert not (setup.storage.root / "v" / setup.video_id).exists()
    assert not setup.staging.exists()

"""Publishing into the media directory never takes a title off disk: a publish that runs twice
(concurrently or again later), onto a title in place or from a staging directory that is gone,
leaves the title whole; removal is for delete and re-run only."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from origin.storage import STAGING, LocalStorage, StoredFile, rename_no_replace

FILES = {"master.m3u8": b"#EXTM3U\n", "h264-360p/seg-00001.m4s": b"x" * 1000}


def stage(storage: LocalStorage, video_id: str, files: dict[str, bytes] = FILES) -> Path:
    staging = storage.staging_dir(video_id)
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    return staging


def title(storage: LocalStorage, video_id: str) -> dict[str, bytes]:
    root = storage.root / "v" / video_id
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def keys(video_id: str) -> list[StoredFile]:
    return [
        StoredFile(f"/v/{video_id}/h264-360p/seg-00001.m4s", 1000),
        StoredFile(f"/v/{video_id}/master.m3u8", 8),
    ]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


async def test_publish_renames_the_staging_directory_into_place(storage: LocalStorage) -> None:
    staging = stage(storage, "vid")
    assert await storage.publish("vid", staging) == keys("vid")
    assert title(storage, "vid") == FILES
    assert not staging.exists()


async def test_publishing_the_same_staging_path_again_is_harmless(storage: LocalStorage) -> None:
    staging = stage(storage, "vid")
    first = await storage.publish("vid", staging)
    again = await storage.publish("vid", staging)  # the job redone after a lost lease
    assert first == again == keys("vid")
    assert title(storage, "vid") == FILES


def publish_at_once(storage: LocalStorage, video_id: str, staging: Path) -> list[object]:
    """Two threads publishing the same staging directory, released together; what each got
    (a file list or an exception)."""
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def publish() -> None:
        start.wait()
        try:
            outcomes.append(storage.publish_blocking(video_id, staging))
        except BaseException as e:
            outcomes.append(e)

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_two_publishes_at_once_keep_the_title(storage: LocalStorage) -> None:
    """A job released at shutdown whose thread still runs, and the worker that redoes it."""
    for round_ in range(20):
        video_id = f"vid{round_}"
        outcomes = publish_at_once(storage, video_id, stage(storage, video_id))
        assert outcomes == [keys(video_id), keys(video_id)]
        assert title(storage, video_id) == FILES


async def test_two_publish_calls_gathered_keep_the_title(storage: LocalStorage) -> None:
    staging = stage(storage, "vid")
    first, second = await asyncio.gather(
        storage.publish("vid", staging), storage.publish("vid", staging)
    )
    assert first == second == keys("vid")
    assert title(storage, "vid") == FILES


async def test_a_title_in_place_is_never_replaced(storage: LocalStorage) -> None:
    await storage.publish("vid", stage(storage, "vid"))
    other = stage(storage, "vid", {"master.m3u8": b"#EXTM3U\n#other\n"})
    assert await storage.publish("vid", other) == keys("vid")  # the title in place
    assert title(storage, "vid") == FILES
    assert other.is_dir()  # left for the stage's clean-up (remove_staging)
    assert await storage.remove_staging("vid") == 1
    assert not other.exists()


async def test_an_empty_directory_in_the_way_is_no_title(storage: LocalStorage) -> None:
    (storage.root / "v" / "vid").mkdir(parents=True)
    assert await storage.publish("vid", stage(storage, "vid")) == keys("vid")
    assert title(storage, "vid") == FILES


async def test_a_vanished_staging_directory_with_nothing_in_place(
    storage: LocalStorage,
) -> None:
    staging = stage(storage, "vid")
    await storage.publish("vid", staging)
    await storage.remove_video("vid")
    with pytest.raises(FileNotFoundError):
        await storage.publish("vid", staging)
    assert not (storage.root / "v" / "vid").exists()


async def test_remove_staging_removes_only_that_titles_directories(
    storage: LocalStorage,
) -> None:
    mine = [stage(storage, "vid"), stage(storage, "vid")]
    theirs = stage(storage, "vid2")
    assert await storage.remove_staging("vid") == 2
    assert not any(p.exists() for p in mine)
    assert theirs.is_dir()
    assert await storage.remove_staging("vid") == 0
    assert sorted(p.name for p in (storage.root / STAGING).iterdir()) == [theirs.name]


def test_rename_no_replace(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a").write_bytes(b"new")
    dst.mkdir()
    (dst / "a").write_bytes(b"old")
    assert rename_no_replace(src, dst) is False
    assert (dst / "a").read_bytes() == b"old" and (src / "a").read_bytes() == b"new"
    (dst / "a").unlink()
    assert rename_no_replace(src, dst) is True  # an empty directory holds nothing to lose
    assert (dst / "a").read_bytes() == b"new" and not src.exists()
    with pytest.raises(FileNotFoundError):
        rename_no_replace(src, tmp_path / "elsewhere")

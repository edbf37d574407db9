"""The ``encode_chunk`` stage in-process, on a real catalog and real ffmpeg: a job of several
rungs renames every checked chunk into place, and a job whose outputs fail their checks leaves
no file behind (no final name, no temporary one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from origin.catalog import Job, SqliteCatalog
from origin.config import PipelineConfig, WebhookConfig
from origin.media.chunks import plan_chunks
from origin.media.complexity import Complexity
from origin.media.ladder import plan_ladder
from origin.media.probe import probe_file
from origin.media.tools import MediaError, Tools
from origin.pipeline import encode
from origin.pipeline.jobs import ENCODE_CHUNK, Analysis, analyse_job, encode_jobs
from origin.pipeline.stage import Context
from origin.storage import LocalStorage
from tests.origin.media.conftest import make_clip
from tests.origin.pipeline.test_jobs import TRACKS


@pytest.fixture(scope="module")
def clip(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640x360, 25 fps, 2 s: one chunk, rungs 240p and 360p."""
    out = tmp_path_factory.mktemp("encode-stage") / "clip.mp4"
    return make_clip(tools, out, size="640x360", seconds=2.0)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    with SqliteCatalog.open(tmp_path / "catalog.db") as catalog:
        yield catalog


async def chunk_job(
    tools: Tools, catalog: SqliteCatalog, clip: Path, *, seconds: float | None = None
) -> tuple[Job, Analysis]:
    """The title's analyse job done (its plan for ``seconds`` of video if given, more than the
    clip holds) and its one chunk job of every rung claimed."""
    probe = await probe_file(tools, clip)
    if seconds is not None:
        probe = replace(probe, duration=seconds)
    plan = plan_chunks(probe, chunk_seconds=4)
    rungs = tuple(plan_ladder(*probe.display_size, 300.0))
    analysis = Analysis(probe, TRACKS, Complexity(300.0, (300.0,)), rungs, plan)
    vid = catalog.create_video("T", source_path=str(clip)).video_id
    catalog.enqueue(vid, analyse_job(probe, TRACKS, 3))
    analyse = catalog.claim("w:1:0")
    assert analyse is not None
    then = encode_jobs(analyse.job_id, analysis, 3, rungs_per_job=0)
    assert catalog.complete(analyse.job_id, "w:1:0", analysis.to_json(), then=then)
    job = catalog.claim("w:1:0", [ENCODE_CHUNK])
    assert job is not None and job.key == "encode:chunk-0000"
    return job, analysis


def context(tmp_path: Path, catalog: SqliteCatalog, tools: Tools) -> Context:
    return Context(
        pipeline=PipelineConfig(work_dir=tmp_path / "work", preset="ultrafast"),
        webhook=WebhookConfig(),
        catalog=catalog,
        storage=LocalStorage(tmp_path / "media"),
        tools=tools,
    )


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_a_job_of_every_rung_renames_each_checked_chunk_into_place(
    tmp_path: Path, tools: Tools, catalog: SqliteCatalog, clip: Path
) -> None:
    job, analysis = await chunk_job(tools, catalog, clip)
    assert job.payload["rungs"] == ["h264-240p", "h264-360p"]
    done = await encode.run_chunk(context(tmp_path, catalog, tools), job)
    work = tmp_path / "work" / job.video_id
    expected = ["chunks/h264-240p/00000.mp4", "chunks/h264-360p/00000.mp4"]
    assert files_under(work) == expected
    assert done.result == {
        "files": [
            {"rung": rung, "file": file, "frames": 50, "bytes": (work / file).stat().st_size}
            for rung, file in zip(["h264-240p", "h264-360p"], expected, strict=True)
        ]
    }
    assert [spec.key for spec in done.then] == ["package"]
    assert done.when_all_done == analysis.fan_in
    assert catalog.get_video(job.video_id).status == "TRANSCODING"


async def test_a_job_whose_chunks_fail_their_checks_leaves_no_file(
    tmp_path: Path, tools: Tools, catalog: SqliteCatalog, clip: Path
) -> None:
    job, _ = await chunk_job(tools, catalog, clip, seconds=4.0)  # the clip has 2 s
    with pytest.raises(MediaError, match="expected 100"):
        await encode.run_chunk(context(tmp_path, catalog, tools), job)
    assert files_under(tmp_path / "work" / job.video_id) == []

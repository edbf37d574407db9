"""Whole titles through real worker processes: real ffmpeg and packager, a real SQLite file,
``python -m origin.pipeline.worker``, SIGKILL and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import m3u8
import pytest

from origin.media.tools import Tools
from tests.origin.pipeline.conftest import (
    WEBHOOK_TOKEN,
    Origin,
    Receiver,
    kill_group,
    make_origin,
    make_title_clip,
)


def log_lines(stderr: str) -> list[dict[str, object]]:
    """The worker's structured log: every line a JSON object."""
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def files_on_disk(title: Path, video_id: str) -> dict[str, int]:
    return {
        f"/v/{video_id}/{p.relative_to(title).as_posix()}": p.stat().st_size
        for p in title.rglob("*")
        if p.is_file()
    }


def decode_errors(tools: Tools, rendition: Path, tmp: Path) -> dict[str, str]:
    """Decode every segment of a rendition (after its init segment); errors by segment."""
    errors = {}
    init = (rendition / "init.mp4").read_bytes()
    for seg in sorted(rendition.glob("seg-*.m4s")):
        joined = tmp / f"{rendition.name}-{seg.name}.mp4"
        joined.write_bytes(init + seg.read_bytes())
        result = subprocess.run(
            [str(tools.ffmpeg), "-v", "error", "-i", str(joined), "-f", "null", "-"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode or result.stderr:
            errors[seg.name] = result.stderr or f"exit {result.returncode}"
    return errors


def wait_for_encode_in_progress(origin: Origin, video_id: str, proc: subprocess.Popen[str]) -> None:
    """Return while an ffmpeg of ``proc`` is writing a chunk (its temporary file exists)."""
    chunks = origin.cfg.pipeline.work_dir / video_id / "chunks"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(chunks.glob("*/.*.tmp.mp4")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("never saw a chunk being encoded")


@pytest.mark.parametrize("rungs_per_job", [0, 1], ids=["one-job-per-chunk", "one-job-per-rung"])
def test_a_title_goes_from_upload_to_ready(
    tmp_path: Path, title_clip: Path, receiver: Receiver, tools: Tools, rungs_per_job: int
) -> None:
    origin = make_origin(tmp_path, webhook_url=receiver.url, rungs_per_job=rungs_per_job)
    vid = origin.add_video(title_clip)
    started = time.monotonic()
    proc = origin.run_worker()
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    with origin.catalog() as catalog:
        detail = catalog.video_detail(vid)
        jobs = catalog.list_jobs(vid)
    video = detail.video
    assert (video.status, video.failure_reason) == ("READY", None)
    assert (video.width, video.height) == (640, 360)
    assert video.duration_s == pytest.approx(4.0)
    assert Counter(j.kind for j in jobs) == {
        "probe": 1, "analyse": 1, "encode_chunk": 2 if rungs_per_job == 0 else 4,
        "encode_audio": 1, "package": 1, "publish": 1, "notify": 1,
    }  # fmt: skip
    assert all((j.state, j.attempts, j.last_error) == ("done", 1, None) for j in jobs)
    # Every rung of both 2 s chunks encoded once, with its 50 frames.
    encoded = [f for j in jobs if j.kind == "encode_chunk" and j.result for f in j.result["files"]]
    assert sorted((f["file"], f["frames"]) for f in encoded) == [
        (f"chunks/{rung}/{chunk:05d}.mp4", 50)
        for rung in ("h264-240p", "h264-360p")
        for chunk in (0, 1)
    ]

    # The catalog's file list is what is on disk, path for path and size for size.
    title = origin.title_dir(vid)
    assert files_on_disk(title, vid) == {f.path: f.size for f in detail.files}
    by_path = {f.path: f.rendition for f in detail.files}
    assert by_path[f"/v/{vid}/master.m3u8"] is None
    assert by_path[f"/v/{vid}/thumbs/poster.jpg"] is None
    assert by_path[f"/v/{vid}/h264-360p/seg-00001.m4s"] == "h264-360p"
    assert by_path[f"/v/{vid}/aac-128k-fre/init.mp4"] == "aac-128k-fre"
    assert by_path[f"/v/{vid}/subs/eng.m3u8"] == by_path[f"/v/{vid}/subs/eng.vtt"] == "subs-eng"

    # The master parses; no rung is above the 640x360 source; renditions match the master.
    master = m3u8.load(str(title / "master.m3u8"))
    variants = sorted(master.playlists, key=lambda p: p.stream_info.bandwidth)
    assert [p.stream_info.resolution for p in variants] == [(426, 240), (640, 360)]
    assert [p.uri for p in variants] == ["h264-240p/playlist.m3u8", "h264-360p/playlist.m3u8"]
    renditions = {r.name: r for r in detail.renditions}
    assert sorted(renditions) == ["aac-128k-fre", "h264-240p", "h264-360p", "subs-eng"]
    for p in variants:
        r = renditions[p.uri.split("/")[0]]
        assert (r.width, r.height) == p.stream_info.resolution
        assert r.bitrate_bps == p.stream_info.bandwidth
        assert r.codecs_string is not None and r.codecs_string.startswith("avc1.")
    assert (renditions["aac-128k-fre"].kind, renditions["aac-128k-fre"].language) == ("audio", "fr")
    assert (renditions["subs-eng"].kind, renditions["subs-eng"].language) == ("subtitle", "en")
    assert "Hello" in (title / "subs" / "eng.vtt").read_text()
    for rendition in ("h264-240p", "h264-360p", "aac-128k-fre"):
        assert decode_errors(tools, title / rendition, tmp_path) == {}

    # Scratch space is gone; the webhook was told once, with the token.
    assert not (origin.cfg.pipeline.work_dir / vid).exists()
    assert list((origin.cfg.media.root / ".staging").iterdir()) == []
    [(headers, body)] = receiver.requests
    assert body == {"event": "video.ready", "video_id": vid, "updated_at": video.updated_at}
    assert headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    notify = next(j for j in jobs if j.kind == "notify")
    assert notify.result is not None and notify.result["delivered"] is True

    lines = log_lines(proc.stderr)
    assert {line["msg"] for line in lines} >= {"worker started", "job done", "worker stopped"}
    assert all(line["service"] == "origin-worker" for line in lines)
    print(f"\nupload to READY in {seconds:.1f} s (worker start included)")


def test_bad_uploads_end_failed_with_a_readable_reason(
    origin: Origin, bad_uploads: dict[str, Path], tmp_path: Path
) -> None:
    expected = {
        "text": "not a media file (Invalid data found when processing input)",
        "truncated": "not a media file (Invalid data found when processing input)",
        "audio_only": "no video stream: the file holds audio only",
        "missing": "the uploaded source is missing (gone.mp4)",
    }
    sources = bad_uploads | {"missing": tmp_path / "gone.mp4"}
    vids = {name: origin.add_video(path, title=name) for name, path in sources.items()}
    proc = origin.run_worker()
    assert proc.returncode == 0, proc.stderr
    for name, reason in expected.items():
        video = origin.video(vids[name])
        [probe] = origin.jobs(vids[name])
        assert (probe.kind, probe.state, probe.attempts) == ("probe", "failed", 1)  # no retry
        assert probe.last_error == reason
        assert [entry["error"] for entry in probe.error_log] == [reason]
        assert video.status == "FAILED"
        assert video.failure_reason == f"probe probe failed: {reason}"
        assert str(sources[name].parent) not in video.failure_reason
    assert not origin.title_dir(vids["text"]).exists()


def one_frame_clip(tools: Tools, out: Path, *, rate: int) -> Path:
    """One video frame at ``rate`` fps and 1.005 s of sound, in NUT: the declared duration
    (the sound's) passes the probe's minimum and its truncation check (within its slack of
    the one frame); the video measured from its packets lasts 1/rate s."""
    argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={rate}:duration=0.001"]
    argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1.005"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "pcm_s16le", str(out)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return out


def test_too_short_sources_fail_at_once_with_a_reason(
    origin: Origin, tools: Tools, clip_dir: Path
) -> None:
    expected = {
        120: "the video is too short: no whole frame at 60 fps in 0.008 s",
        60: "the video is too short: 1 frame(s), 0.017 s, less than one audio frame "
        "(1024 samples at 48000 Hz)",
    }
    vids = {
        rate: origin.add_video(one_frame_clip(tools, clip_dir / f"one-{rate}.nut", rate=rate))
        for rate in expected
    }
    proc = origin.run_worker()
    assert proc.returncode == 0, proc.stderr
    for rate, reason in expected.items():
        [probe] = origin.jobs(vids[rate])
        assert (probe.kind, probe.state, probe.attempts) == ("probe", "failed", 1)  # no retry
        assert probe.last_error == reason
        video = origin.video(vids[rate])
        assert (video.status, video.failure_reason) == ("FAILED", f"probe probe failed: {reason}")


def test_a_worker_killed_mid_encode_is_taken_over_after_its_lease(
    tmp_path: Path, tools: Tools, clip_dir: Path, receiver: Receiver
) -> None:
    origin = make_origin(tmp_path, webhook_url=receiver.url)  # lease_s = 3
    clip = make_title_clip(tools, clip_dir / "kill.mkv", size="1280x720", seconds=4.0)
    vid = origin.add_video(clip)
    first = origin.start_worker(once=False)
    try:
        wait_for_encode_in_progress(origin, vid, first)
    finally:
        kill_group(first)
    killed_at = time.time()
    [victim] = [j for j in origin.jobs(vid) if j.state == "leased"]
    assert victim.kind == "encode_chunk" and victim.lease_owner is not None
    assert victim.lease_expires_at is not None and victim.lease_expires_at > killed_at

    second = origin.run_worker()
    assert second.returncode == 0, second.stderr
    jobs = {j.job_id: j for j in origin.jobs(vid)}
    redone = jobs.pop(victim.job_id)
    assert (redone.state, redone.attempts) == ("done", 2)
    [lost] = redone.error_log
    assert lost["error"] == f"lease of {victim.lease_owner} expired"
    assert lost["at"] >= victim.lease_expires_at  # taken over only once the lease ran out
    assert all((j.state, j.attempts) == ("done", 1) for j in jobs.values()), jobs

    # READY exactly once: one publish, one notification.
    with origin.catalog() as catalog:
        detail = catalog.video_detail(vid)
    assert detail.video.status == "READY"
    assert [j.attempts for j in jobs.values() if j.kind == "publish"] == [1]
    assert len(receiver.requests) == 1
    # Published files are whole: the catalog matches the disk, no temporary file was
    # published, and every segment of every rendition decodes.
    title = origin.title_dir(vid)
    assert files_on_disk(title, vid) == {f.path: f.size for f in detail.files}
    assert not [p for p in title.rglob("*") if ".tmp" in p.name]
    video_rungs = sorted(r.name for r in detail.renditions if r.kind == "video")
    assert video_rungs == ["h264-240p", "h264-360p", "h264-540p", "h264-720p"]
    for name in [*video_rungs, "aac-128k-fre"]:
        assert decode_errors(tools, title / name, tmp_path) == {}
    # The killed worker's half-written chunk went with the work directory.
    assert not (origin.cfg.pipeline.work_dir / vid).exists()


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_more(
    origin: Origin, title_clip: Path
) -> None:
    vid = origin.add_video(title_clip)
    worker = origin.start_worker(once=False)
    try:
        wait_for_encode_in_progress(origin, vid, worker)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            kill_group(worker)
    assert worker.returncode == 0, stderr
    jobs = origin.jobs(vid)
    assert not [j for j in jobs if j.state == "leased"]  # the running job was recorded
    states = Counter(j.state for j in jobs if j.kind == "encode_chunk")
    assert states["done"] >= 1 and states["queued"] >= 1
    assert [line["msg"] for line in log_lines(stderr)][-1] == "worker stopped"
    # Another worker finishes the title.
    assert origin.run_worker().returncode == 0
    assert origin.video(vid).status == "READY"


def test_an_idle_worker_exits_on_sigterm(origin: Origin) -> None:
    worker = origin.start_worker(once=False)
    time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=10)
    assert worker.returncode == 0, stderr
    assert [line["msg"] for line in log_lines(stderr)][-1] == "worker stopped"


def test_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "origin.toml"
    config.write_text('[pipeline]\npreset = "warp"\n')
    argv = [sys.executable, "-m", "origin.pipeline.worker", "-c", str(config), "--once"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "pipeline.preset" in proc.stderr

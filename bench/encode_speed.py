"""Encode speed of the whole pipeline, and how it scales with worker processes (issue 4).

Usage (from the repo root)::

    .venv/bin/python bench/encode_speed.py             # 60 s 1080p source: ~6 min on 2 cores
    .venv/bin/python bench/encode_speed.py --quick     # 20 s source
    .venv/bin/python bench/encode_speed.py --workers 1,2 --json var/encode_speed.json

The source: 60 s of 1920x1080, 25 fps ``testsrc2`` under light temporal grain with a stereo
sine, made once with the packaged ffmpeg (x264 CRF 18: a mezzanine of tens of Mbit/s) and
cached under ``var/bench/encode_speed/``.

For every worker count N, interleaved over ``--rounds`` rounds: a fresh catalog (SQLite) and
media root, the source registered as a video with the pipeline's first job, then N real
``python -m origin.pipeline.worker -c CONFIG`` processes, each with ``concurrency = 1`` and
``encoder_threads = 1`` (so N processes use at most N cores for encodes), started together. The
clock runs from the start of the workers to the moment the catalog shows the video READY (every
stage: probe, complexity, chunk encodes of the full ladder, audio, packaging, thumbnails,
publish). Workers are then stopped by PID (SIGTERM).

Figures: x-realtime = source seconds / wall seconds; the speed-up of N workers is the median
wall time of 1 worker / that of N. Target (issue 4): 2 workers >= 1.8x one worker.

Pinning (``--pin yes``, the default): worker i and every ffmpeg it starts are bound to CPU i
(``sched_setaffinity``), so one worker means one core. Without it, "one encoder thread" is not
one core: ffmpeg 8 runs demuxing, decoding, filtering and encoding in threads of their own, so
a single worker with ``encoder_threads = 1`` already keeps about 1.5 of this machine's 2 cores
busy (decoding the mezzanine is a large part of every chunk job), and a second worker can only
add the rest (``--pin no`` measures that). Pinning is also how a farm runs workers: one
per core, ``CPUAffinity=`` in the unit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `origin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from origin.catalog import SqliteCatalog
from origin.media.tools import find_tools
from origin.pipeline.start import first_jobs

REPO = Path(__file__).resolve().parent.parent
TARGET_SPEEDUP = 1.8
POLL_S = 0.5
TIMEOUT_S = 3600.0

CONFIG = """\
[server]
listen = ["127.0.0.1:1"]

[media]
root = "{root}/media"
sources = "{root}/sources"

[catalog]
path = "{root}/catalog.db"

[pipeline]
work_dir = "{root}/work"
lease_s = 60.0
poll_s = 0.2
concurrency = 1
encoder_threads = 1
preset = "veryfast"
chunk_seconds = {chunk_seconds}
{rungs_per_job}
[log]
level = "warning"
"""


@dataclass(frozen=True, slots=True)
class Run:
    workers: int
    round: int
    wall_s: float
    x_realtime: float
    status: str


def make_source(seconds: int, out: Path) -> Path:
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tools = find_tools()
    tmp = out.with_suffix(".tmp.mp4")
    argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=25,noise=alls=4:allf=t"]
    argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    argv += ["-ac", "2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18"]
    argv += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(tmp)]
    subprocess.run(argv, check=True, timeout=1800)
    tmp.rename(out)
    return out


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    """A preexec_fn that binds the child (and the ffmpeg processes it starts) to one CPU."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def one_run(
    source: Path,
    workers: int,
    rnd: int,
    root: Path,
    chunk_seconds: int,
    pin: bool,
    rungs_per_job: int | None = None,
) -> Run:
    root.mkdir(parents=True)
    cfg = root / "origin.toml"
    per_job = "" if rungs_per_job is None else f"rungs_per_job = {rungs_per_job}\n"
    cfg.write_text(CONFIG.format(root=root, chunk_seconds=chunk_seconds, rungs_per_job=per_job))
    catalog = SqliteCatalog.open(root / "catalog.db")
    try:
        video = catalog.create_video(f"bench {workers}w r{rnd}", source_path=str(source))
        catalog.enqueue_many(video.video_id, first_jobs())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "origin.pipeline.worker", "-c", str(cfg)]
        logs = [(root / f"worker-{i}.log").open("wb") for i in range(workers)]
        t0 = time.monotonic()
        cpus = sorted(os.sched_getaffinity(0))
        procs = [
            subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_pinned(cpus[i % len(cpus)] if pin else None),
            )
            for i, log in enumerate(logs)
        ]
        try:
            status = "PENDING"
            while time.monotonic() - t0 < TIMEOUT_S:
                status = catalog.get_video(video.video_id).status
                if status in ("READY", "FAILED"):
                    break
                if all(p.poll() is not None for p in procs):
                    status = "workers exited"
                    break
                time.sleep(POLL_S)
            wall = time.monotonic() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for log in logs:
                log.close()
        duration = catalog.get_video(video.video_id).duration_s or 0.0
    finally:
        catalog.close()
    return Run(workers, rnd, wall, duration / wall if wall > 0 else 0.0, status)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="20 s source, one round")
    ap.add_argument("--seconds", type=int, help="source length (default 60, quick 20)")
    ap.add_argument("--workers", default="1,2", help="worker counts (default: %(default)s)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 2, quick 1)")
    ap.add_argument("--chunk-seconds", type=int, default=10)
    ap.add_argument(
        "--rungs-per-job",
        type=int,
        help="pipeline.rungs_per_job (default: the config default, 0 = all rungs per chunk job)",
    )
    ap.add_argument(
        "--pin",
        choices=("yes", "no"),
        default="yes",
        help="bind worker i to CPU i (default: %(default)s; see the module docstring)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench" / "encode_speed")
    args = ap.parse_args(argv)
    seconds = args.seconds or (20 if args.quick else 60)
    rounds = args.rounds or (1 if args.quick else 2)
    counts = [int(n) for n in args.workers.split(",")]
    source = make_source(seconds, args.work / f"source-{seconds}s.mp4")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs: list[Run] = []
    for rnd in range(rounds):
        for n in counts:
            root = args.work / f"run-{stamp}-{n}w-r{rnd}"
            run = one_run(
                source.resolve(),
                n,
                rnd,
                root.resolve(),
                args.chunk_seconds,
                args.pin == "yes",
                args.rungs_per_job,
            )
            print(
                f"round {rnd}: {n} worker(s): {run.wall_s:7.1f} s wall, "
                f"{run.x_realtime:5.2f}x realtime, {run.status}",
                flush=True,
            )
            runs.append(run)
    pinning = "each worker bound to its own CPU" if args.pin == "yes" else "workers not bound"
    print(f"\nsource: {seconds} s of 1920x1080 25 fps; full ladder; {pinning}")
    print(f"{'workers':>7}  {'wall s (median)':>15}  {'x realtime':>10}  {'speed-up':>8}  runs")
    base = statistics.median(r.wall_s for r in runs if r.workers == counts[0])
    speedups: dict[int, float] = {}
    for n in counts:
        walls = [r.wall_s for r in runs if r.workers == n]
        median = statistics.median(walls)
        speedups[n] = base / median
        each = " ".join(f"{w:.1f}" for w in walls)
        print(f"{n:>7}  {median:>15.1f}  {seconds / median:>10.2f}  {speedups[n]:>7.2f}x  {each}")
    bad = [r for r in runs if r.status != "READY"]
    if 2 in speedups and counts[0] == 1:
        met = speedups[2] >= TARGET_SPEEDUP and not bad
        print(
            f"target: 2 workers >= {TARGET_SPEEDUP}x one worker: {speedups[2]:.2f}x -> "
            f"{'met' if met else 'NOT met'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs]}, indent=2))
    if bad:
        print(f"{len(bad)} run(s) did not reach READY: see {args.work}/run-{stamp}-*/worker-*.log")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-title ladder against the fixed ladder: bits at equal quality (issue 4).

Usage (from the repo root)::

    .venv/bin/python bench/per_title.py            # 8 s clips: ~4 min on 2 cores
    .venv/bin/python bench/per_title.py --quick    # 4 s clips
    .venv/bin/python bench/per_title.py --json var/per_title.json

Two generated 1920x1080, 25 fps sources, kept lossless (x264 QP 0):

- ``low``: slowly moving gradients with a small moving picture-in-picture (animation, slides,
  talking heads: flat areas and little motion);
- ``high``: the moving ``testsrc2`` pattern under heavy temporal grain (film grain, sports: every
  pixel changes every frame).

For each source the pipeline's own steps plan two ladders: the **fixed** reference ladder
(``plan_ladder(..., complexity=None)``, the Apple-like table) and the **per-title** ladder
(``measure_complexity`` then ``plan_ladder``). Every rung of both is encoded exactly as the
pipeline encodes it (:func:`origin.media.chunks.video_args`: same filters, preset, GOP and VBV
settings, one thread), then scaled back to 1920x1080 (Lanczos) and compared with the source by
PSNR (the psnr filter's ``average``) and XPSNR (luma), as a player on a 1080p screen shows it.

Bits at equal quality: each ladder is a rate-quality curve (its rungs' measured bitrate and
quality, Pareto points only). The Bjontegaard delta rate (BD-rate) is the average difference of
log bitrate between the two curves over the quality range both cover, with piecewise-linear
interpolation of log rate against quality. A negative BD-rate means the per-title ladder needs
fewer bits for the same quality. This is how per-title ladders are compared: a simple title's
per-title ladder reaches a given quality at a higher resolution for the same bits.

Targets (issue 4): BD-rate <= -20 % on ``low``; on ``high`` no quality loss, i.e. every
per-title rung at least as good as the fixed rung of the same name.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `origin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from origin.media.chunks import Chunk, plan_chunks, video_args
from origin.media.complexity import measure_complexity
from origin.media.ladder import Rung, plan_ladder
from origin.media.probe import ProbeLimits, ProbeResult, inspect
from origin.media.tools import Tools, find_tools, run

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, RATE = 1920, 1080, 25
LOW_TARGET_BD_RATE = -20.0

SOURCES = {
    "low": (
        f"gradients=s={WIDTH}x{HEIGHT}:r={RATE}:speed=0.01[bg];"
        f"testsrc2=s=480x270:r={RATE}[fg];[bg][fg]overlay=x='200+40*t':y=300"
    ),
    "high": f"testsrc2=s={WIDTH}x{HEIGHT}:r={RATE},noise=alls=40:allf=t",
    "grain": f"testsrc2=s={WIDTH}x{HEIGHT}:r={RATE},noise=alls=20:allf=t",
}

_PSNR = re.compile(r"PSNR .*average:([0-9.]+|inf)")
_XPSNR = re.compile(r"XPSNR\s+y:\s*([0-9.]+|inf)")


# -- pure ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    rung: str
    width: int
    height: int
    target_kbps: int
    kbps: float
    """Measured: bytes of the encode x 8 / duration."""
    psnr: float
    xpsnr: float


def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(rate, quality) points where more rate buys more quality, by rate."""
    kept: list[tuple[float, float]] = []
    for rate, quality in sorted(points):
        while kept and kept[-1][1] <= quality and kept[-1][0] >= rate:
            kept.pop()
        if not kept or quality > kept[-1][1]:
            kept.append((rate, quality))
    return kept


def _log_rate_at(curve: Sequence[tuple[float, float]], quality: float) -> float:
    """log(rate) at ``quality`` on a Pareto curve, by linear interpolation."""
    for (r0, q0), (r1, q1) in itertools.pairwise(curve):
        if q0 <= quality <= q1:
            t = 0.0 if q1 == q0 else (quality - q0) / (q1 - q0)
            return math.log(r0) + t * (math.log(r1) - math.log(r0))
    raise ValueError(f"quality {quality} outside the curve")


def bd_rate(
    reference: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]], steps: int = 400
) -> tuple[float, tuple[float, float]]:
    """Average % rate difference of ``test`` against ``reference`` at equal quality, and the
    quality range it was taken over. Points are (rate, quality)."""
    ref, tst = pareto(reference), pareto(test)
    if len(ref) < 2 or len(tst) < 2:
        raise ValueError("need two points on each curve")
    lo = max(ref[0][1], tst[0][1])
    hi = min(ref[-1][1], tst[-1][1])
    if hi <= lo:
        raise ValueError(f"the curves share no quality range ({lo:.2f} > {hi:.2f})")
    total = 0.0
    for i in range(steps + 1):
        q = lo + (hi - lo) * i / steps
        weight = 0.5 if i in (0, steps) else 1.0
        total += weight * (_log_rate_at(tst, q) - _log_rate_at(ref, q))
    mean_log_diff = total / steps
    return (math.exp(mean_log_diff) - 1.0) * 100.0, (lo, hi)


def parse_quality(stderr: str) -> tuple[float, float]:
    """(PSNR average, XPSNR y) from ffmpeg's log of the psnr and xpsnr filters."""
    psnr = _PSNR.findall(stderr)
    xpsnr = _XPSNR.findall(stderr)
    if not psnr or not xpsnr:
        raise ValueError(f"no PSNR/XPSNR in ffmpeg output: {stderr[-500:]!r}")
    return float(psnr[-1]), float(xpsnr[-1])


# -- running ---------------------------------------------------------------------------------


async def make_source(tools: Tools, name: str, seconds: float, out: Path) -> Path:
    if await asyncio.to_thread(out.exists):
        return out
    tmp = out.with_suffix(".tmp.mkv")
    argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", SOURCES[name], "-t", str(seconds)]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"]
    await run([*argv, str(tmp)], step=f"source {name}", timeout=600)
    tmp.rename(out)
    return out


async def encode_and_measure(
    tools: Tools, src: Path, probe: ProbeResult, rung: Rung, out: Path, gate: asyncio.Semaphore
) -> Point:
    plan = plan_chunks(probe, chunk_seconds=10_000)
    whole = Chunk(0, 0, plan.total_frames)
    async with gate:
        await run(
            video_args(tools.ffmpeg, src, plan, whole, rung, out, preset="veryfast", threads=1),
            step=f"encode {rung.name}",
            timeout=1800,
        )
        graph = (
            f"[0:v]scale={WIDTH}:{HEIGHT}:flags=lanczos,format=yuv420p,split[a][b];"
            "[1:v]format=yuv420p,split[c][d];[a][c]psnr;[b][d]xpsnr"
        )
        argv = [str(tools.ffmpeg), "-hide_banner", "-nostdin", "-i", str(out), "-i", str(src)]
        argv += ["-filter_complex", graph, "-f", "null", "-"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"quality of {out}: {err.decode(errors='replace')[-500:]}")
    psnr, xpsnr = parse_quality(err.decode(errors="replace"))
    size = (await asyncio.to_thread(out.stat)).st_size
    kbps = size * 8 / probe.duration / 1000
    return Point(rung.name, rung.width, rung.height, rung.kbps, kbps, psnr, xpsnr)


@dataclass(frozen=True, slots=True)
class ClipResult:
    clip: str
    complexity_kbps: float
    fixed: list[Point]
    per_title: list[Point]
    bd_rate_psnr: float
    bd_rate_xpsnr: float
    psnr_range: tuple[float, float]
    worst_rung_psnr_delta: float
    """min over rungs of (per-title PSNR - fixed PSNR), same rung name."""


async def bench_clip(tools: Tools, name: str, seconds: float, work: Path) -> ClipResult:
    src = await make_source(tools, name, seconds, work / f"{name}-{seconds:g}s.mkv")
    probe = await inspect(tools, src, ProbeLimits())
    complexity = await measure_complexity(tools, src, probe)
    w, h = probe.display_size
    fixed = plan_ladder(w, h, None)
    per_title = plan_ladder(w, h, complexity.kbps)
    gate = asyncio.Semaphore(2)
    jobs = [
        encode_and_measure(tools, src, probe, r, work / f"{name}-{kind}-{r.name}.mp4", gate)
        for kind, ladder in (("fixed", fixed), ("title", per_title))
        for r in ladder
    ]
    points = await asyncio.gather(*jobs)
    fixed_pts, title_pts = list(points[: len(fixed)]), list(points[len(fixed) :])
    bd_psnr, psnr_range = bd_rate(
        [(p.kbps, p.psnr) for p in fixed_pts], [(p.kbps, p.psnr) for p in title_pts]
    )
    bd_xpsnr, _ = bd_rate(
        [(p.kbps, p.xpsnr) for p in fixed_pts], [(p.kbps, p.xpsnr) for p in title_pts]
    )
    by_name = {p.rung: p for p in fixed_pts}
    worst = min(p.psnr - by_name[p.rung].psnr for p in title_pts if p.rung in by_name)
    return ClipResult(
        name, complexity.kbps, fixed_pts, title_pts, bd_psnr, bd_xpsnr, psnr_range, worst
    )


def print_clip(r: ClipResult) -> None:
    print(f"\n{r.clip}: complexity {r.complexity_kbps:.0f} kbps (reference 730)")
    print(f"{'rung':<12}{'size':>11}  {'fixed kbps':>10} {'PSNR':>6} {'XPSNR':>6}  "
          f"{'title kbps':>10} {'PSNR':>6} {'XPSNR':>6}")  # fmt: skip
    titles = {p.rung: p for p in r.per_title}
    for f in r.fixed:
        t = titles.get(f.rung)
        right = f"{t.kbps:>10.0f} {t.psnr:>6.2f} {t.xpsnr:>6.2f}" if t else ""
        size = f"{f.width}x{f.height}"
        print(f"{f.rung:<12}{size:>11}  {f.kbps:>10.0f} {f.psnr:>6.2f} {f.xpsnr:>6.2f}  {right}")
    lo, hi = r.psnr_range
    print(
        f"BD-rate per-title vs fixed: {r.bd_rate_psnr:+.1f} % (PSNR {lo:.1f}-{hi:.1f} dB), "
        f"{r.bd_rate_xpsnr:+.1f} % (XPSNR); bits ratio at equal quality "
        f"{1 + r.bd_rate_psnr / 100:.2f}x; worst rung PSNR delta {r.worst_rung_psnr_delta:+.2f} dB"
    )


async def main_async(seconds: float, work: Path, clips: Sequence[str]) -> list[ClipResult]:
    tools = find_tools()
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    results = []
    for name in clips:
        t0 = time.monotonic()
        result = await bench_clip(tools, name, seconds, work)
        print_clip(result)
        print(f"({time.monotonic() - t0:.0f} s)", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="4 s clips instead of 8 s")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench" / "per_title")
    ap.add_argument("--clips", default=",".join(SOURCES), help="default: %(default)s")
    args = ap.parse_args(argv)
    clips = [c for c in args.clips.split(",") if c]
    if not clips or any(c not in SOURCES for c in clips):
        ap.error(f"--clips: choose from {', '.join(SOURCES)}")
    results = asyncio.run(main_async(4.0 if args.quick else 8.0, args.work, clips))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    low = next((r for r in results if r.clip == "low"), None)
    high = next((r for r in results if r.clip == "high"), None)
    if low is None or high is None:
        return 0
    low_ok = low.bd_rate_psnr <= LOW_TARGET_BD_RATE
    high_ok = high.worst_rung_psnr_delta >= 0.0
    target = f"target <= {LOW_TARGET_BD_RATE:.0f} %"
    print(
        f"\nlow: {low.bd_rate_psnr:+.1f} % bits at equal PSNR ({target})"
        f" -> {'met' if low_ok else 'NOT met'}; high: worst rung {high.worst_rung_psnr_delta:+.2f}"
        f" dB vs fixed (target >= 0) -> {'met' if high_ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How hard a title is to encode, measured with quick constant-quality probe encodes.

Model: x264 at a fixed quality (CRF :data:`PROBE_CRF`, preset :data:`PROBE_PRESET`) spends the
bits a picture needs for that quality, so the bitrate it lands on is the complexity signal.
:func:`plan_samples` spreads :data:`SAMPLE_COUNT` samples of :data:`SAMPLE_SECONDS` evenly over
the title (the whole title if it is shorter than the samples together); each is encoded at the
output frame rate into the :data:`PROBE_BOX` (640x360, turned for portrait; never enlarged) with
only the elementary stream written to stdout, whose size is the sample's bitrate.

:func:`combine` turns the samples into one figure: a sample from a smaller picture is scaled up
to the box by (box pixels / picture pixels) ** :data:`~origin.media.ladder.PIXEL_EXPONENT`, then
the mean and the maximum are averaged: the mean lets a mostly simple title save bits, the
maximum protects its hardest scene, since a chunk's rate control can move bits only within
that chunk. The result, in kbps, is what :func:`origin.media.ladder.plan_ladder` compares with
:data:`~origin.media.ladder.COMPLEXITY_REFERENCE_KBPS`.

Reference points at 640x360, 25 fps, CRF 23 veryfast: a static colour-bar card ~10 kbps, the
moving ``testsrc2`` pattern ~650, a Mandelbrot zoom ~1450, full-frame noise ~14000; natural
film content typically lands at 300-900. Limits: a few 2 s samples can miss a short hard scene
(hence the max term and the ladder's floor and ceiling), and CRF bits track PSNR-like quality
rather than what viewers notice (grain, dark scenes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from origin.media.chunks import output_fps, video_filter
from origin.media.ladder import PIXEL_EXPONENT, fit
from origin.media.probe import ProbeResult
from origin.media.tools import Tools, run

PROBE_CRF = 23
PROBE_PRESET = "veryfast"
"""Fixed, like the CRF: the reference constant is calibrated for exactly these settings."""
PROBE_BOX = (640, 360)
SAMPLE_COUNT = 4
SAMPLE_SECONDS = 2.0
SAMPLE_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Sample:
    start: float
    """Seconds from the first video frame."""
    duration: float


@dataclass(frozen=True, slots=True)
class Complexity:
    kbps: float
    """Combined figure at the probe box (the input of ``plan_ladder``)."""
    samples_kbps: tuple[float, ...]
    """Each sample's bitrate, scaled to the probe box."""


def plan_samples(
    duration: float, count: int = SAMPLE_COUNT, seconds: float = SAMPLE_SECONDS
) -> list[Sample]:
    """``count`` samples centred in equal parts of the title (one sample of it all if short)."""
    if duration <= 0 or count <= 0 or seconds <= 0:
        raise ValueError(f"cannot sample {count} x {seconds} s of {duration} s")
    if duration <= count * seconds:
        return [Sample(0.0, duration)]
    part = duration / count
    return [Sample(round(part * (i + 0.5) - seconds / 2, 3), seconds) for i in range(count)]


def probe_size(display_w: int, display_h: int) -> tuple[int, int]:
    """The sample picture size: the source fitted into :data:`PROBE_BOX`, never enlarged."""
    width, height, _ = fit(display_w, display_h, *PROBE_BOX)
    return width, height


def sample_args(
    ffmpeg: Path,
    src: Path,
    probe: ProbeResult,
    sample: Sample,
    *,
    fps: Fraction,
    threads: int = 1,
) -> list[str]:
    """A CRF probe encode of one sample; the H.264 elementary stream goes to stdout."""
    width, height = probe_size(*probe.display_size)
    gop = round(fps * 2)
    args = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error"]
    args += ["-threads", str(threads)]
    start = probe.video_start + sample.start
    if start > 0:
        args += ["-ss", f"{start:.3f}"]
    args += ["-t", f"{sample.duration:.3f}", "-i", str(src), "-map", f"0:{probe.video_index}"]
    args += ["-an", "-sn", "-dn", "-filter:v", video_filter(fps, width, height)]
    args += ["-c:v", "libx264", "-preset", PROBE_PRESET, "-crf", str(PROBE_CRF)]
    args += ["-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0"]
    args += ["-threads", str(threads), "-f", "h264", "pipe:1"]
    return args


def sample_kbps(size_bytes: int, seconds: float, width: int, height: int) -> float:
    """One sample's bitrate, scaled to the probe box when its picture is smaller."""
    if seconds <= 0:
        raise ValueError("empty sample")
    kbps = size_bytes * 8 / seconds / 1000
    box_pixels = PROBE_BOX[0] * PROBE_BOX[1]
    pixels = width * height
    if pixels < box_pixels:
        kbps *= (box_pixels / pixels) ** PIXEL_EXPONENT
    return kbps


def combine(samples_kbps: Sequence[float]) -> Complexity:
    """Average of the mean and the maximum sample."""
    if not samples_kbps:
        raise ValueError("no samples")
    mean = sum(samples_kbps) / len(samples_kbps)
    return Complexity(kbps=(mean + max(samples_kbps)) / 2, samples_kbps=tuple(samples_kbps))


async def measure_complexity(
    tools: Tools,
    src: Path,
    probe: ProbeResult,
    *,
    count: int = SAMPLE_COUNT,
    seconds: float = SAMPLE_SECONDS,
    threads: int = 1,
    timeout: float = SAMPLE_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> Complexity:
    """Encode the samples one after the other (each a second or so) and combine them."""
    fps = output_fps(probe.fps)
    width, height = probe_size(*probe.display_size)
    results = []
    for i, sample in enumerate(plan_samples(probe.duration, count, seconds)):
        argv = sample_args(tools.ffmpeg, src, probe, sample, fps=fps, threads=threads)
        out = await run(argv, step=f"complexity sample {i}", timeout=timeout, capture_stdout=True)
        results.append(sample_kbps(len(out), sample.duration, width, height))
    return combine(results)

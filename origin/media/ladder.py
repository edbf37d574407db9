"""The bitrate ladder: a fixed reference, and the per-title plan derived from it (pure).

Reference ladder (:data:`REFERENCE_LADDER`), one rung per height, after the H.264 and HEVC
tables of Apple's HLS Authoring Specification; each rung is a 16:9 box and an average bitrate:

    h264-240p    426x240      300 kbps      h264-1080p  1920x1080   7800 kbps
    h264-360p    640x360      730 kbps      hevc-1440p  2560x1440   8100 kbps
    h264-540p    960x540     2000 kbps      hevc-2160p  3840x2160  16800 kbps
    h264-720p   1280x720     4500 kbps

:func:`plan_ladder` turns it into the rungs of one title:

1. Size: the source's displayed picture is fitted into each rung's box (turned to portrait for
   a portrait source), keeping its aspect ratio, with even dimensions. A rung whose box would
   need the picture enlarged is dropped: no rung is above the source. A source smaller than
   the lowest box gets that one rung at its own size.
2. Codec: H.264 up to 1080p, HEVC above (or AV1 when asked: bitrates x :data:`AV1_FACTOR`).
3. Bitrate: reference kbps x complexity scale x pixel factor, where

   - complexity scale = clamp(c / :data:`COMPLEXITY_REFERENCE_KBPS`, :data:`MIN_SCALE`,
     :data:`MAX_SCALE`) with c the title's complexity (:mod:`origin.media.complexity`: the
     kbps a CRF 23 probe encode needs at 640x360). The reference ladder is right for a title
     whose 360p constant-quality bitrate equals the 360p rung's own 730 kbps; a title that
     needs half of that at equal quality needs about half at every rung (constant-quality
     bitrate ratios between titles hold roughly across resolutions). ``None`` = scale 1.
   - pixel factor = (rung pixels / box pixels) ** :data:`PIXEL_EXPONENT` for pictures that do
     not fill their box (letterboxed 2.39:1, 4:3), since bits grow slower than pixel count.

   The VBV peak is :data:`MAXRATE_FACTOR` x the average (Apple: peak <= 2 x average for VOD)
   with a buffer of :data:`BUFSIZE_FACTOR` x the average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

Codec = Literal["h264", "hevc", "av1"]

COMPLEXITY_REFERENCE_KBPS = 730.0
"""Complexity (probe kbps at 640x360, CRF 23, veryfast) for which the reference is right."""
MIN_SCALE = 0.25
"""Least fraction of the reference a title gets: samples can miss its hardest scenes."""
MAX_SCALE = 2.0
"""Most: beyond twice the reference, more bits buy little and stress players' buffers."""
PIXEL_EXPONENT = 0.75
AV1_FACTOR = 0.8
"""AV1 bits relative to HEVC at equal quality (SVT-AV1 vs x265 at comparable speed)."""
MAXRATE_FACTOR = 1.5
BUFSIZE_FACTOR = 2.0
MIN_KBPS = 50


@dataclass(frozen=True, slots=True)
class ReferenceRung:
    height: int
    """Nominal height; the box is ``box_width`` x ``height`` (16:9)."""
    kbps: int
    codec: Codec

    @property
    def box_width(self) -> int:
        return _even(self.height * 16 / 9)


REFERENCE_LADDER: tuple[ReferenceRung, ...] = (
    ReferenceRung(240, 300, "h264"),
    ReferenceRung(360, 730, "h264"),
    ReferenceRung(540, 2000, "h264"),
    ReferenceRung(720, 4500, "h264"),
    ReferenceRung(1080, 7800, "h264"),
    ReferenceRung(1440, 8100, "hevc"),
    ReferenceRung(2160, 16800, "hevc"),
)


@dataclass(frozen=True, slots=True)
class Rung:
    """One video rendition of a title."""

    name: str
    """Rendition name, e.g. ``h264-720p`` (DESIGN.md); also its directory."""
    codec: Codec
    width: int
    height: int
    kbps: int
    """Target average bitrate."""
    maxrate_kbps: int
    bufsize_kbps: int

    @property
    def profile(self) -> str:
        return "high" if self.codec == "h264" else "main"

    def as_dict(self) -> dict[str, str | int]:
        """JSON-ready form, for a job record."""
        return {
            "name": self.name,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "kbps": self.kbps,
            "maxrate_kbps": self.maxrate_kbps,
            "bufsize_kbps": self.bufsize_kbps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, str | int]) -> Rung:
        codec = str(data["codec"])
        if codec not in ("h264", "hevc", "av1"):
            raise ValueError(f"unknown codec {codec!r}")
        return cls(
            name=str(data["name"]),
            codec=cast(Codec, codec),
            width=int(data["width"]),
            height=int(data["height"]),
            kbps=int(data["kbps"]),
            maxrate_kbps=int(data["maxrate_kbps"]),
            bufsize_kbps=int(data["bufsize_kbps"]),
        )


def complexity_scale(complexity_kbps: float | None) -> float:
    """The factor applied to every reference bitrate; 1 for ``None`` (the fixed ladder)."""
    if complexity_kbps is None:
        return 1.0
    return min(MAX_SCALE, max(MIN_SCALE, complexity_kbps / COMPLEXITY_REFERENCE_KBPS))


def fit(source_w: int, source_h: int, box_w: int, box_h: int) -> tuple[int, int, float]:
    """The source fitted into the box (turned like the source): even width and height, never
    above the source's, and the scale factor the box asks for (> 1: it would enlarge)."""
    if source_h > source_w:
        box_w, box_h = box_h, box_w
    factor = min(box_w / source_w, box_h / source_h)
    width = min(_even(source_w * factor), _even_down(source_w))
    height = min(_even(source_h * factor), _even_down(source_h))
    return width, height, factor


def plan_ladder(
    source_w: int,
    source_h: int,
    complexity_kbps: float | None,
    *,
    av1: bool = False,
    reference: Sequence[ReferenceRung] = REFERENCE_LADDER,
) -> list[Rung]:
    """The rungs of one title, lowest first. ``source_w`` x ``source_h`` is the displayed size
    (:attr:`origin.media.probe.ProbeResult.display_size`)."""
    if source_w <= 0 or source_h <= 0:
        raise ValueError(f"no picture size: {source_w}x{source_h}")
    if not reference:
        raise ValueError("empty reference ladder")
    scale = complexity_scale(complexity_kbps)
    rungs: list[Rung] = []
    for ref in sorted(reference, key=lambda r: r.height):
        width, height, factor = fit(source_w, source_h, ref.box_width, ref.height)
        if factor > 1 + 1e-9:
            if rungs:
                break
            # Smaller than the lowest box: that rung at the source's own size.
            width, height = _even_down(source_w), _even_down(source_h)
        rungs.append(_rung(ref, width, height, scale, av1))
    return rungs


def _rung(ref: ReferenceRung, width: int, height: int, scale: float, av1: bool) -> Rung:
    codec: Codec = "av1" if av1 and ref.codec == "hevc" else ref.codec
    pixel_factor = min(1.0, (width * height) / (ref.box_width * ref.height)) ** PIXEL_EXPONENT
    kbps = ref.kbps * scale * pixel_factor * (AV1_FACTOR if codec == "av1" else 1.0)
    kbps = max(MIN_KBPS, round(kbps))
    return Rung(
        name=f"{codec}-{ref.height}p",
        codec=codec,
        width=width,
        height=height,
        kbps=kbps,
        maxrate_kbps=round(kbps * MAXRATE_FACTOR),
        bufsize_kbps=round(kbps * BUFSIZE_FACTOR),
    )


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def _even_down(value: int) -> int:
    return max(2, value // 2 * 2)

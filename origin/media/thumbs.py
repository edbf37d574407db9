"""Thumbnails: a poster, and sprite sheets with a WebVTT track for the scrub bar.

Written under ``out_dir`` (the title's ``thumbs/``)::

    poster.jpg                 a frame at 10 % of the duration, fitted into 1280x720
    sprite-001.jpg ...         tiles of 160 px wide (height from the aspect ratio), 10 a row,
                               up to 10 rows a sheet, one tile every ``interval`` seconds
    thumbs.vtt                 one cue per tile: ``sprite-001.jpg#xywh=x,y,w,h``

Feed it a joined rung (square pixels, display orientation, an IDR every 2 s) rather than the
upload: with ``keyframes_only`` and an interval that is a multiple of 2 s, ffmpeg decodes only
the IDR frames, which is what the tiles show anyway, so the sheets of a two-hour title cost a
few seconds. Pure: :func:`plan_sprites`, :func:`poster_args`, :func:`sprite_args`,
:func:`thumbnails_vtt`; :func:`make_thumbnails` runs them.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path

from origin.media.ladder import fit
from origin.media.tools import MediaError, Tools, run

POSTER = "poster.jpg"
VTT = "thumbs.vtt"
SHEET_PATTERN = "sprite-%03d.jpg"
POSTER_FRACTION = 0.10
POSTER_BOX = (1280, 720)
TILE_WIDTH = 160
COLUMNS = 10
ROWS = 10
MIN_INTERVAL = 2
MAX_TILES = 600
"""Tiles of a title at most (6 sheets); longer titles get a longer interval."""
THUMBS_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class SpritePlan:
    interval: int
    """Seconds between tiles (a multiple of 2, the IDR cadence)."""
    count: int
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    """Rows per sheet (fewer than :data:`ROWS` when one sheet holds every tile)."""

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows

    @property
    def sheets(self) -> int:
        return math.ceil(self.count / self.per_sheet)

    def sheet_names(self) -> list[str]:
        return [SHEET_PATTERN % (i + 1) for i in range(self.sheets)]


@dataclass(frozen=True, slots=True)
class Thumbnails:
    poster: Path
    sheets: tuple[Path, ...]
    vtt: Path


def plan_sprites(
    duration: float,
    width: int,
    height: int,
    *,
    interval: int | None = None,
    columns: int = COLUMNS,
    rows: int = ROWS,
    tile_width: int = TILE_WIDTH,
) -> SpritePlan:
    """Tiles for a ``duration`` s title whose picture is ``width`` x ``height``."""
    if duration <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"nothing to tile: {duration} s of {width}x{height}")
    if interval is None:
        interval = MIN_INTERVAL * max(1, math.ceil(duration / (MIN_INTERVAL * MAX_TILES)))
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    count = max(1, math.ceil(duration / interval - 1e-9))
    tile_height = max(2, 2 * round(tile_width * height / width / 2))
    return SpritePlan(
        interval=interval,
        count=count,
        tile_width=tile_width,
        tile_height=tile_height,
        columns=columns,
        rows=min(rows, math.ceil(count / columns)),
    )


def poster_time(duration: float) -> float:
    return round(duration * POSTER_FRACTION, 3)


def poster_args(
    ffmpeg: Path, src: Path, out: Path, *, at: float, width: int, height: int
) -> list[str]:
    """One JPEG of the frame at ``at`` seconds, fitted into :data:`POSTER_BOX`, never enlarged."""
    w, h, _ = fit(width, height, *POSTER_BOX)
    args = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if at > 0:
        args += ["-ss", f"{at:.3f}"]
    args += ["-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1"]
    args += ["-filter:v", f"scale={w}:{h},setsar=1", "-q:v", "3", str(out)]
    return args


def sprite_args(
    ffmpeg: Path, src: Path, out_dir: Path, plan: SpritePlan, *, keyframes_only: bool
) -> list[str]:
    """All sprite sheets in one pass."""
    args = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if keyframes_only:
        args += ["-skip_frame", "nokey"]
    filters = (
        f"fps=1/{plan.interval}:round=down:eof_action=pass,"
        f"scale={plan.tile_width}:{plan.tile_height},"
        f"setsar=1,tile={plan.columns}x{plan.rows}"
    )
    args += ["-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn", "-filter:v", filters]
    args += ["-frames:v", str(plan.sheets), "-q:v", "5", str(out_dir / SHEET_PATTERN)]
    return args


def thumbnails_vtt(plan: SpritePlan, duration: float) -> str:
    """The WebVTT thumbnail track: cue i covers [i*interval, (i+1)*interval) of the title."""
    names = plan.sheet_names()
    cues = ["WEBVTT\n"]
    for i in range(plan.count):
        start = i * plan.interval
        end = min(duration, (i + 1) * plan.interval)
        sheet, pos = divmod(i, plan.per_sheet)
        row, col = divmod(pos, plan.columns)
        x, y = col * plan.tile_width, row * plan.tile_height
        cues.append(
            f"\n{_timestamp(start)} --> {_timestamp(end)}\n"
            f"{names[sheet]}#xywh={x},{y},{plan.tile_width},{plan.tile_height}\n"
        )
    return "".join(cues)


async def make_thumbnails(
    tools: Tools,
    src: Path,
    out_dir: Path,
    *,
    duration: float,
    width: int,
    height: int,
    interval: int | None = None,
    keyframes_only: bool = False,
    timeout: float = THUMBS_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> Thumbnails:
    """Poster, sheets and track for ``src`` (``width`` x ``height``, ``duration`` s)."""
    plan = plan_sprites(duration, width, height, interval=interval)
    if keyframes_only and plan.interval % MIN_INTERVAL:
        raise ValueError(f"keyframes_only needs an interval that is a multiple of {MIN_INTERVAL}")
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    poster = out_dir / POSTER
    argv = poster_args(
        tools.ffmpeg, src, poster, at=poster_time(duration), width=width, height=height
    )
    await run(argv, step="poster", timeout=timeout)
    argv = sprite_args(tools.ffmpeg, src, out_dir, plan, keyframes_only=keyframes_only)
    await run(argv, step="sprites", timeout=timeout)
    sheets = tuple(out_dir / name for name in plan.sheet_names())
    vtt = out_dir / VTT
    await asyncio.to_thread(vtt.write_text, thumbnails_vtt(plan, duration))
    missing = [p.name for p in (poster, *sheets) if not p.is_file()]
    if missing:
        raise MediaError("thumbnails", None, f"ffmpeg wrote no {', '.join(missing)}")
    return Thumbnails(poster=poster, sheets=sheets, vtt=vtt)


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"

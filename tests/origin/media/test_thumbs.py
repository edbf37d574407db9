"""Sprite planning and the WebVTT thumbnail track (pure), and real sheets of short titles."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.media.thumbs import (
    make_thumbnails,
    plan_sprites,
    poster_args,
    poster_time,
    sprite_args,
    thumbnails_vtt,
)
from origin.media.tools import Tools
from tests.origin.media.conftest import make_clip


def test_a_short_title_fits_one_partial_sheet() -> None:
    plan = plan_sprites(10.0, 1920, 1080)
    assert (plan.interval, plan.count, plan.tile_width, plan.tile_height) == (2, 5, 160, 90)
    assert (plan.columns, plan.rows, plan.sheets) == (10, 1, 1)
    assert plan.sheet_names() == ["sprite-001.jpg"]


def test_a_long_title_gets_a_longer_interval_and_several_sheets() -> None:
    plan = plan_sprites(2 * 3600.0, 1280, 720)
    assert plan.interval == 12 and plan.interval % 2 == 0
    assert plan.count == 600
    assert (plan.rows, plan.sheets) == (10, 6)
    portrait = plan_sprites(60.0, 1080, 1920, interval=10)
    assert (portrait.tile_width, portrait.tile_height, portrait.count) == (160, 284, 6)


def test_vtt_cues_point_into_the_right_sheet_and_tile() -> None:
    plan = plan_sprites(205.0, 1280, 720, interval=2)  # 103 tiles: two sheets
    cues = thumbnails_vtt(plan, 205.0).split("\n\n")
    assert cues[0] == "WEBVTT"
    assert len(cues) == 1 + 103
    assert cues[1] == "00:00:00.000 --> 00:00:02.000\nsprite-001.jpg#xywh=0,0,160,90"
    assert cues[12] == "00:00:22.000 --> 00:00:24.000\nsprite-001.jpg#xywh=160,90,160,90"
    assert cues[100] == "00:03:18.000 --> 00:03:20.000\nsprite-001.jpg#xywh=1440,810,160,90"
    assert cues[101] == "00:03:20.000 --> 00:03:22.000\nsprite-002.jpg#xywh=0,0,160,90"
    assert cues[103].strip() == "00:03:24.000 --> 00:03:25.000\nsprite-002.jpg#xywh=320,0,160,90"


def test_argv() -> None:
    plan = plan_sprites(10.0, 640, 360)
    args = " ".join(sprite_args(Path("ff"), Path("in.mp4"), Path("t"), plan, keyframes_only=True))
    assert "-skip_frame nokey -i in.mp4" in args
    assert "fps=1/2:round=down:eof_action=pass,scale=160:90,setsar=1,tile=10x1" in args
    assert args.endswith("-frames:v 1 -q:v 5 t/sprite-%03d.jpg")
    poster = " ".join(
        poster_args(Path("ff"), Path("in.mp4"), Path("p.jpg"), at=1.0, width=3840, height=2160)
    )
    assert "-ss 1.000 -i in.mp4" in poster and "scale=1280:720" in poster
    assert poster_time(10.0) == 1.0


@pytest.mark.parametrize("bad", [(0.0, 640, 360), (10.0, 0, 360)])
def test_nothing_to_tile(bad: tuple[float, int, int]) -> None:
    with pytest.raises(ValueError):
        plan_sprites(*bad)


@pytest.mark.parametrize("seconds", [1.2, 2.0, 2.5])
async def test_short_titles_get_their_sheet(tools: Tools, tmp_path: Path, seconds: float) -> None:
    """One keyframe and a title no longer than the interval: the fps filter used to emit no
    frame at the end, and the JPEG encoder then failed to open (2.0 s titles never published)."""
    src = make_clip(tools, tmp_path / "c.mp4", seconds=seconds, gop=250)
    thumbs = await make_thumbnails(
        tools, src, tmp_path / "t", duration=seconds, width=320, height=180, keyframes_only=True
    )
    assert [p.name for p in thumbs.sheets] == ["sprite-001.jpg"]
    assert thumbs.sheets[0].read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert "sprite-001.jpg#xywh=0,0,160,90" in thumbs.vtt.read_text()

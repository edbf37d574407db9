"""Per-title ladder planning: sizes never above the source, codecs by height, bits by complexity."""

from __future__ import annotations

import pytest

from origin.media.ladder import (
    COMPLEXITY_REFERENCE_KBPS,
    MAX_SCALE,
    MIN_SCALE,
    REFERENCE_LADDER,
    ReferenceRung,
    Rung,
    complexity_scale,
    fit,
    plan_ladder,
)

REFERENCE_KBPS = {f"{r.codec}-{r.height}p": r.kbps for r in REFERENCE_LADDER}


def names(rungs: list[Rung]) -> list[str]:
    return [r.name for r in rungs]


def test_a_2160p_source_gets_the_whole_ladder_with_hevc_on_top() -> None:
    rungs = plan_ladder(3840, 2160, None)
    assert names(rungs) == [
        "h264-240p", "h264-360p", "h264-540p", "h264-720p", "h264-1080p",
        "hevc-1440p", "hevc-2160p",
    ]  # fmt: skip
    assert [(r.width, r.height) for r in rungs][-1] == (3840, 2160)
    assert {r.name: r.kbps for r in rungs} == REFERENCE_KBPS  # no complexity: the fixed ladder
    assert all(r.profile == ("high" if r.codec == "h264" else "main") for r in rungs)


@pytest.mark.parametrize(
    ("size", "top", "top_size"),
    [
        ((640, 360), "h264-360p", (640, 360)),
        ((1920, 1080), "h264-1080p", (1920, 1080)),
        ((1920, 1088), "h264-1080p", (1906, 1080)),  # coded height of some cameras
        ((1280, 720), "h264-720p", (1280, 720)),
        ((900, 506), "h264-360p", (640, 360)),  # between rungs: the one below
        ((1440, 1080), "h264-1080p", (1440, 1080)),  # 4:3 fills the 1080p box's height
        ((1920, 800), "h264-1080p", (1920, 800)),  # 2.4:1 fills its width
        ((1080, 1920), "h264-1080p", (1080, 1920)),  # portrait: the box turns
        ((2560, 1440), "hevc-1440p", (2560, 1440)),
    ],
)
def test_no_rung_above_the_source(
    size: tuple[int, int], top: str, top_size: tuple[int, int]
) -> None:
    rungs = plan_ladder(*size, 500.0)
    assert rungs[-1].name == top
    assert (rungs[-1].width, rungs[-1].height) == top_size
    for r in rungs:
        assert r.width <= size[0] and r.height <= size[1]
        assert r.width % 2 == 0 and r.height % 2 == 0
        # the aspect ratio is kept to within the rounding to even dimensions
        assert abs(r.width / r.height - size[0] / size[1]) < 0.02


def test_a_640x360_source_gets_two_rungs() -> None:
    rungs = plan_ladder(640, 360, None)
    assert [(r.name, r.width, r.height) for r in rungs] == [
        ("h264-240p", 426, 240),
        ("h264-360p", 640, 360),
    ]


def test_a_source_below_the_lowest_box_gets_one_rung_at_its_own_size() -> None:
    [rung] = plan_ladder(320, 180, None)
    assert (rung.name, rung.width, rung.height) == ("h264-240p", 320, 180)
    assert rung.kbps < REFERENCE_KBPS["h264-240p"]  # fewer pixels, fewer bits
    [odd] = plan_ladder(161, 91, None)
    assert (odd.width, odd.height) == (160, 90)


def test_simple_content_gets_fewer_bits_and_complex_content_more() -> None:
    simple = plan_ladder(1920, 1080, 150.0)
    typical = plan_ladder(1920, 1080, COMPLEXITY_REFERENCE_KBPS)
    complex_ = plan_ladder(1920, 1080, 1200.0)
    assert names(simple) == names(typical) == names(complex_)
    for s, t, c in zip(simple, typical, complex_, strict=True):
        assert s.kbps < t.kbps < c.kbps
        assert t.kbps == REFERENCE_KBPS[t.name]
        assert s.maxrate_kbps == round(s.kbps * 1.5) and s.bufsize_kbps == s.kbps * 2
    assert simple[-1].kbps <= 0.8 * typical[-1].kbps  # the per-title target: >= 20 % fewer


@pytest.mark.parametrize(
    ("complexity", "scale"),
    [(None, 1.0), (0.0, MIN_SCALE), (1.0, MIN_SCALE), (365.0, 0.5), (1e9, MAX_SCALE)],
)
def test_complexity_scale_is_clamped(complexity: float | None, scale: float) -> None:
    assert complexity_scale(complexity) == pytest.approx(scale)


def test_av1_replaces_hevc_with_fewer_bits() -> None:
    rungs = plan_ladder(3840, 2160, None, av1=True)
    assert names(rungs)[-2:] == ["av1-1440p", "av1-2160p"]
    assert rungs[-1].kbps == round(REFERENCE_KBPS["hevc-2160p"] * 0.8)
    assert all(r.codec == "h264" for r in rungs[:-2])


def test_custom_reference_and_round_trip() -> None:
    reference = [ReferenceRung(180, 200, "hevc"), ReferenceRung(360, 700, "h264")]
    rungs = plan_ladder(640, 360, None, reference=reference)
    assert names(rungs) == ["hevc-180p", "h264-360p"]
    assert [Rung.from_dict(r.as_dict()) for r in rungs] == rungs
    with pytest.raises(ValueError):
        Rung.from_dict({**rungs[0].as_dict(), "codec": "mpeg2"})


def test_fit_turns_the_box_for_portrait() -> None:
    width, height, factor = fit(1080, 1920, 1280, 720)
    assert (width, height) == (720, 1280)
    assert factor == pytest.approx(2 / 3)
    assert fit(640, 360, 1280, 720)[2] == 2.0  # enlarging


@pytest.mark.parametrize("size", [(0, 360), (640, -2)])
def test_no_picture_no_ladder(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        plan_ladder(*size, None)

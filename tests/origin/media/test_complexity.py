"""Complexity: sample placement and combination (pure); real probe encodes rank content."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.media.complexity import (
    Sample,
    combine,
    measure_complexity,
    plan_samples,
    probe_size,
    sample_kbps,
)
from origin.media.ladder import plan_ladder
from origin.media.probe import ProbeLimits, inspect
from origin.media.tools import Tools
from tests.origin.media.conftest import make_clip


def test_samples_are_centred_in_equal_parts() -> None:
    assert plan_samples(100.0, 4, 2.0) == [
        Sample(11.5, 2.0), Sample(36.5, 2.0), Sample(61.5, 2.0), Sample(86.5, 2.0),
    ]  # fmt: skip
    assert plan_samples(6.0, 4, 2.0) == [Sample(0.0, 6.0)]  # short: the whole title once
    with pytest.raises(ValueError):
        plan_samples(0.0)


def test_probe_size_fits_the_box_and_never_enlarges() -> None:
    assert probe_size(1920, 1080) == (640, 360)
    assert probe_size(1080, 1920) == (360, 640)
    assert probe_size(320, 180) == (320, 180)


def test_sample_bitrate_is_scaled_to_the_box() -> None:
    assert sample_kbps(250_000, 2.0, 640, 360) == 1000.0
    assert sample_kbps(250_000, 2.0, 320, 180) == pytest.approx(1000.0 * 4**0.75)


def test_combine_weighs_the_hardest_sample() -> None:
    c = combine([100.0, 100.0, 100.0, 900.0])
    assert c.kbps == (300.0 + 900.0) / 2
    assert c.samples_kbps == (100.0, 100.0, 100.0, 900.0)


@pytest.fixture(scope="module")
def content(tools: Tools, clip_dir: Path) -> dict[str, Path]:
    return {
        "simple": make_clip(tools, clip_dir / "bars.mp4", pattern="smptebars", seconds=2),
        "complex": make_clip(
            tools,
            clip_dir / "noise.mp4",
            seconds=2,
            extra=("-vf", "noise=alls=40:allf=t", "-crf", "10"),
        ),
    }


async def test_simple_content_measures_simpler_and_gets_fewer_bits(
    tools: Tools, content: dict[str, Path]
) -> None:
    measured = {}
    for name, path in content.items():
        probe = await inspect(tools, path, ProbeLimits())
        measured[name] = await measure_complexity(tools, path, probe, count=1, seconds=1.0)
    assert measured["simple"].kbps * 10 < measured["complex"].kbps
    simple = plan_ladder(1920, 1080, measured["simple"].kbps)
    complex_ = plan_ladder(1920, 1080, measured["complex"].kbps)
    fixed = plan_ladder(1920, 1080, None)
    for s, f, c in zip(simple, fixed, complex_, strict=True):
        assert s.kbps < f.kbps < c.kbps

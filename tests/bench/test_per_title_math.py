"""The per-title benchmark's arithmetic: Pareto points and the Bjontegaard delta rate."""

from __future__ import annotations

import math

import pytest

from bench.per_title import bd_rate, pareto, parse_quality


def test_pareto_drops_points_that_buy_no_quality() -> None:
    points = [(100.0, 30.0), (200.0, 29.0), (300.0, 35.0), (250.0, 36.0)]
    assert pareto(points) == [(100.0, 30.0), (250.0, 36.0)]


def test_same_curve_is_zero() -> None:
    curve = [(100.0, 30.0), (200.0, 33.0), (400.0, 36.0)]
    rate, (lo, hi) = bd_rate(curve, curve)
    assert rate == pytest.approx(0.0, abs=1e-9)
    assert (lo, hi) == (30.0, 36.0)


def test_half_the_rate_everywhere_is_minus_fifty_percent() -> None:
    ref = [(100.0, 30.0), (200.0, 33.0), (400.0, 36.0)]
    test = [(r / 2, q) for r, q in ref]
    rate, _ = bd_rate(ref, test)
    assert rate == pytest.approx(-50.0)


def test_only_the_shared_quality_range_counts() -> None:
    ref = [(100.0, 30.0), (1000.0, 40.0)]
    test = [(50.0, 35.0), (500.0, 45.0)]
    rate, (lo, hi) = bd_rate(ref, test)
    assert (lo, hi) == (35.0, 40.0)
    # At q=35 ref is 316 (log-linear), test 50; at q=40 ref 1000, test 158: a constant ratio.
    assert rate == pytest.approx((50 / math.sqrt(100 * 1000) - 1) * 100, rel=1e-6)


def test_disjoint_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="share no quality"):
        bd_rate([(1.0, 10.0), (2.0, 20.0)], [(1.0, 30.0), (2.0, 40.0)])


def test_parse_quality_reads_the_filter_summaries() -> None:
    log = (
        "[Parsed_psnr_4 @ 0x1] PSNR y:40.1 u:44.2 v:45.0 average:41.234567 min:39 max:43\n"
        "[Parsed_xpsnr_5 @ 0x2] XPSNR  y: 37.5012  u: 40.1  v: 41.0  (minimum: 37.5012)\n"
    )
    assert parse_quality(log) == (41.234567, 37.5012)
    with pytest.raises(ValueError):
        parse_quality("nothing here")

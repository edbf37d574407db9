"""Pure rules of the catalog: status transitions, retry back-off, cursors, ids, JSON."""

from __future__ import annotations

import pytest

from origin.catalog import Invalid, JobCounts, RetryPolicy
from origin.catalog.models import (
    VIDEO_STATUSES,
    VideoStatus,
    clip_error,
    decode_cursor,
    encode_cursor,
    may_set_status,
    new_id,
)
from origin.catalog.rows import dump_json
from vodedge.paths import VIDEO_ID_RE

ALLOWED = {
    ("PENDING", "PENDING"), ("PENDING", "SEGMENTED"), ("PENDING", "TRANSCODING"),
    ("PENDING", "FAILED"), ("SEGMENTED", "SEGMENTED"), ("SEGMENTED", "TRANSCODING"),
    ("SEGMENTED", "FAILED"), ("TRANSCODING", "TRANSCODING"), ("TRANSCODING", "FAILED"),
    ("FAILED", "FAILED"),
}  # fmt: skip


@pytest.mark.parametrize("old", VIDEO_STATUSES)
@pytest.mark.parametrize("new", VIDEO_STATUSES)
def test_status_transitions(old: VideoStatus, new: VideoStatus) -> None:
    assert may_set_status(old, new) == ((old, new) in ALLOWED)


def test_back_off_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(base_s=5, max_s=60)
    assert [policy.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert policy.delay(0) == 5


def test_cursor_round_trips_exactly() -> None:
    at = 1_700_000_000.123456789
    assert decode_cursor(encode_cursor(at, "a-b_c")) == (at, "a-b_c")
    for bad in ("", "!!!", encode_cursor(1.0, "x")[:-3], "bm90IGEgY3Vyc29y"):
        with pytest.raises(Invalid):
            decode_cursor(bad)


def test_ids_are_url_safe_and_eleven_characters() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 11 and VIDEO_ID_RE.match(i) for i in ids)


def test_json_is_canonical_and_refuses_what_json_cannot_hold() -> None:
    assert dump_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    for bad in ({1, 2}, float("nan"), object()):
        with pytest.raises(Invalid):
            dump_json(bad)


def test_errors_are_clipped_keeping_the_end() -> None:
    text = "start " + "x" * 10_000 + " the reason"
    clipped = clip_error(text)
    assert clipped is not None and len(clipped) == 4000 and clipped.endswith(" the reason")
    assert clip_error("short") == "short" and clip_error(None) is None


def test_counts_add_up() -> None:
    total = JobCounts.sum([JobCounts(1, 2, 3, 4), JobCounts(done=5)])
    assert (total, total.total) == (JobCounts(1, 2, 8, 4), 15)
